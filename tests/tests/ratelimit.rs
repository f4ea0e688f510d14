//! Rate limiting end to end: per-user command quotas across WebSocket connections, and the
//! HTTP layer's 429, over real sockets.

use anyhow::{Result, bail, ensure};
use streamgate::{Gateway, KeyedRateLimiter, Principal, Rate, RateLimitConfig, StaticTokens};
use streamgate_e2e::{Client, TestServer};
use streamgate_protocol::{
    Command, ErrorBody, ErrorCode, Payload, Ping, ServerFrame, UserCommand, WireFormat,
};

async fn server(limiter: &KeyedRateLimiter, extra: axum::Router) -> Result<TestServer> {
    let tokens = ["alice", "bob"]
        .into_iter()
        .fold(StaticTokens::new(), |t, user| {
            t.with_token(user, Principal::user(user))
        });
    let gateway = Gateway::builder()
        .authenticator(tokens)
        .rate_limiter(limiter.clone())
        .build()?;
    TestServer::start_with(gateway, extra).await
}

/// Sends `message.send` and returns the error that answers it (no handler is registered, so
/// an allowed command is answered `UNKNOWN_COMMAND`).
async fn send_message(client: &mut Client) -> Result<ErrorBody> {
    let id = client
        .send(Command::Command(UserCommand {
            name: "message.send".into(),
            room: None,
            data: Payload::json(&serde_json::json!({ "text": "hi" }))?,
        }))
        .await?;
    match client.recv().await? {
        ServerFrame::Error(e) if e.id == Some(id) => Ok(e.error),
        other => bail!("expected the answer to request {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_eleventh_message_in_a_minute_across_two_connections_is_refused() -> Result<()> {
    let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
    let server = server(&limiter, axum::Router::new()).await?;
    let url = server.ws_url();
    let mut tab1 = Client::connect(&url, "alice", WireFormat::Json).await?;
    let mut tab2 = Client::connect(&url, "alice", WireFormat::Bincode).await?;

    for i in 0..10 {
        let tab = if i % 2 == 0 { &mut tab1 } else { &mut tab2 };
        let answer = send_message(tab).await?;
        ensure!(
            answer.code == ErrorCode::UnknownCommand,
            "message {} was refused: {answer:?}",
            i + 1
        );
    }
    let refused = send_message(&mut tab2).await?;
    ensure!(refused.code == ErrorCode::RateLimited, "{refused:?}");
    let retry = refused.retry_after_ms.unwrap_or(0);
    ensure!(retry > 0 && retry <= 60_000, "retry_after_ms {retry}");
    // The other connection shares the budget.
    ensure!(send_message(&mut tab1).await?.code == ErrorCode::RateLimited);

    // The sessions stay open.
    let id = tab1.send(Command::Ping(Ping::default())).await?;
    match tab1.recv().await? {
        ServerFrame::Pong(p) if p.id == Some(id) => {}
        other => bail!("expected pong, got {other:?}"),
    }

    // Another user has a budget of their own.
    let mut bob = Client::connect(&url, "bob", WireFormat::Json).await?;
    for _ in 0..10 {
        let answer = send_message(&mut bob).await?;
        ensure!(answer.code == ErrorCode::UnknownCommand, "{answer:?}");
    }
    let refusals = server
        .gateway
        .hub()
        .metrics()
        .snapshot()
        .errors_for(ErrorCode::RateLimited);
    ensure!(refusals == 2, "{refusals} refusals counted");
    Ok(())
}

#[tokio::test]
async fn http_routes_behind_the_layer_get_429_with_the_protocol_error() -> Result<()> {
    const QUOTA: u32 = 3;
    let limiter = KeyedRateLimiter::new(
        RateLimitConfig::default().http_per_address(Rate::per_minute(QUOTA)),
    )?;
    let api = axum::Router::new()
        .route("/api/ping", axum::routing::get(|| async { "pong" }))
        .route_layer(limiter.http_layer());
    let server = server(&limiter, api).await?;
    let url = format!("http://{}/api/ping", server.addr);
    let http = reqwest::Client::new();
    for _ in 0..QUOTA {
        let response = http.get(&url).send().await?;
        ensure!(response.status() == 200, "{}", response.status());
    }
    let response = http.get(&url).send().await?;
    ensure!(response.status() == 429, "{}", response.status());
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ensure!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = response.json().await?;
    ensure!(body["error"]["code"] == "RATE_LIMITED", "{body}");
    let ms = body["error"]["retry_after_ms"].as_u64().unwrap_or(0);
    ensure!(ms > 0 && ms <= 60_000, "{body}");
    // The WebSocket endpoint is not behind the layer.
    Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    Ok(())
}
