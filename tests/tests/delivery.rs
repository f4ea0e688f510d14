//! Delivery guarantees over real sockets: acknowledged publications (the protocol `ack` over
//! WebSocket, the Socket.IO callback through the official client) with retries and a
//! `DeliveryReport` for the publisher; offline queues delivered in order on the next join;
//! connection attempts limited per address on every transport.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use streamgate::{
    Gateway, KeyedRateLimiter, Principal, Publish, Rate, RateLimitConfig, RoomId, StaticTokens,
    Target,
    protocol::{Ack, Command, Ping, Publication, ServerFrame, WireFormat},
};
use streamgate_e2e::{
    Client, TestServer,
    browser::prerequisites,
    node::{NodeClient, is_joined, publication},
};

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn tokens() -> StaticTokens {
    ["alice", "bob", "carol"]
        .into_iter()
        .fold(StaticTokens::new(), |t, user| {
            t.with_token(user, Principal::user(user))
        })
}

async fn server(
    configure: impl FnOnce(streamgate::GatewayBuilder) -> streamgate::GatewayBuilder,
) -> Result<TestServer> {
    let gateway = configure(Gateway::builder().authenticator(tokens())).build()?;
    TestServer::start(gateway).await
}

async fn member(server: &TestServer, user: &str, room: &RoomId) -> Result<Client> {
    let mut client = Client::connect(&server.ws_url(), user, WireFormat::Json).await?;
    client.join(room, None).await?;
    Ok(client)
}

fn text(p: &Publication) -> Result<String> {
    Ok(p.data.decode::<String>()?)
}

/// Sends `ping` and reads up to its `pong`: everything queued before it has arrived.
async fn settle(client: &mut Client) -> Result<Vec<ServerFrame>> {
    let id = client.send(Command::Ping(Ping {})).await?;
    let mut before = Vec::new();
    loop {
        match client.recv().await? {
            ServerFrame::Pong(p) if p.id == Some(id) => return Ok(before),
            other => before.push(other),
        }
    }
}

fn to_user(user: &str) -> Target {
    Target {
        users: vec![user.into()],
        sessions: vec![],
    }
}

#[tokio::test]
async fn a_client_that_acks_is_delivered_and_a_silent_one_is_retried_then_failed() -> Result<()> {
    let server = server(|b| b.acks(Duration::from_millis(300), 3)).await?;
    let r = room("conversation:1");
    let mut alice = member(&server, "alice", &r).await?;
    let mut bob = member(&server, "bob", &r).await?;

    let delivery = server
        .gateway
        .publish_with_report(&r, Publish::json("invoice.ready", &"#42")?)?;
    let got = alice.publication().await?;
    ensure!(got.ack && got.offset == delivery.outcome().position.offset);
    let id = alice
        .send(Command::Ack(Ack::offset(r.clone(), got.offset)))
        .await?;
    match alice.recv().await? {
        ServerFrame::Reply(reply) if reply.id == id => {}
        other => bail!("expected the ack's reply, got {other:?}"),
    }
    // Bob reads but never acknowledges: the first delivery and two retries, same offset.
    for attempt in 1..=3 {
        let again = bob.publication().await?;
        ensure!(again.offset == got.offset, "attempt {attempt}: {again:?}");
    }

    let report = tokio::time::timeout(Duration::from_secs(10), delivery.report())
        .await
        .context("no report")?;
    let users = |list: &[streamgate::Recipient]| -> Vec<(Option<String>, u32)> {
        list.iter().map(|r| (r.user.clone(), r.attempts)).collect()
    };
    ensure!(
        users(&report.delivered) == [(Some("alice".to_owned()), 1)],
        "{report:?}"
    );
    ensure!(
        users(&report.failed) == [(Some("bob".to_owned()), 3)],
        "{report:?}"
    );
    ensure!(report.pending.is_empty());
    // Nothing more for either of them.
    ensure!(settle(&mut alice).await?.is_empty());
    ensure!(settle(&mut bob).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_socketio_acknowledgement_callback_counts_as_the_ack() -> Result<()> {
    if !prerequisites(
        "the_socketio_acknowledgement_callback_counts_as_the_ack",
        false,
    )? {
        return Ok(());
    }
    let server = server(|b| b.acks(Duration::from_millis(300), 2)).await?;
    let url = format!("http://{}/streaming", server.addr);
    let r = room("conversation:io");
    let common = [format!("room={r}"), "until=2".to_owned()];
    let mut acking = NodeClient::spawn(
        &url,
        "alice",
        &[&common[..], &["ack=1".to_owned()]].concat(),
    )
    .await?;
    let mut silent = NodeClient::spawn(&url, "bob", &common).await?;
    acking.until(is_joined).await?;
    silent.until(is_joined).await?;

    let delivery = server
        .gateway
        .publish_with_report(&r, Publish::json("stream.event", &"ack me")?)?;
    let report = tokio::time::timeout(Duration::from_secs(10), delivery.report())
        .await
        .context("no report")?;
    let users = |list: &[streamgate::Recipient]| -> Vec<Option<String>> {
        list.iter().map(|r| r.user.clone()).collect()
    };
    ensure!(
        users(&report.delivered) == [Some("alice".to_owned())],
        "{report:?}"
    );
    ensure!(
        users(&report.failed) == [Some("bob".to_owned())],
        "{report:?}"
    );
    ensure!(report.failed[0].attempts == 2, "{report:?}");

    server.gateway.publish(&r, "stream.event", "done")?;
    let acking = acking.finish().await?;
    let silent = silent.finish().await?;
    let acked: Vec<_> = acking.iter().filter(|l| l["kind"] == "acked").collect();
    ensure!(acked.len() == 1 && acked[0]["offset"] == 1, "{acking:#?}");
    // The silent client saw the publication twice (first delivery and one retry), then 2.
    let offsets = silent
        .iter()
        .filter_map(publication)
        .map(|p| p.map(|(_, p)| p.offset))
        .collect::<Result<Vec<_>>>()?;
    ensure!(offsets == [1, 1, 2], "{offsets:?}");
    Ok(())
}

#[tokio::test]
async fn an_offline_user_gets_what_was_sent_meanwhile_in_order_and_nothing_expired() -> Result<()> {
    let server = server(|b| b.offline_queue(10, Duration::from_millis(800))).await?;
    let r = room("conversation:7");
    let _alice = member(&server, "alice", &r).await?;
    let send = |text: &str| {
        server
            .gateway
            .publish_with(
                &r,
                Publish::json("message.created", &text)?.to(to_user("bob")),
            )
            .map_err(anyhow::Error::from)
    };
    ensure!(send("too old")?.offline == 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for text in ["m1", "m2", "m3"] {
        ensure!(send(text)?.offline == 1);
    }

    let mut bob = Client::connect(&server.ws_url(), "bob", WireFormat::Json).await?;
    bob.join(&r, None).await?;
    let mut texts = Vec::new();
    for frame in settle(&mut bob).await? {
        match frame {
            ServerFrame::Publication(p) => texts.push(text(&p)?),
            other => bail!("unexpected {other:?}"),
        }
    }
    ensure!(texts == ["m1", "m2", "m3"], "{texts:?}");
    // Delivered once: a second session of bob joining later gets nothing.
    let mut again = Client::connect(&server.ws_url(), "bob", WireFormat::Json).await?;
    again.join(&r, None).await?;
    ensure!(settle(&mut again).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn connection_attempts_per_address_are_limited_across_transports() -> Result<()> {
    let limiter =
        KeyedRateLimiter::new(RateLimitConfig::default().connect_per_address(Rate::per_minute(3)))?;
    let server = server(|b| b.rate_limiter(limiter)).await?;
    let _one = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    let _two = Client::connect(&server.ws_url(), "bob", WireFormat::Json).await?;
    let http = reqwest::Client::new();
    let sse = |http: &reqwest::Client| {
        http.get(format!("http://{}/sse?rooms=conversation:1", server.addr))
            .bearer_auth("carol")
            .send()
    };
    let third = sse(&http).await?;
    ensure!(third.status() == 200, "{}", third.status());

    // The fourth, whatever the transport, is refused before authentication.
    match Client::connect(&server.ws_url(), "alice", WireFormat::Json).await {
        Ok(_) => bail!("a fourth websocket was admitted"),
        Err(e) => {
            let refused = e
                .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                .and_then(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => Some(response),
                    _ => None,
                })
                .context("expected an HTTP refusal")?;
            ensure!(refused.status() == 429, "{}", refused.status());
            ensure!(refused.headers().contains_key("retry-after"));
            let body: serde_json::Value =
                serde_json::from_slice(refused.body().as_deref().unwrap_or_default())?;
            ensure!(body["error"]["code"] == "RATE_LIMITED", "{body}");
            ensure!(
                body["error"]["retry_after_ms"]
                    .as_u64()
                    .is_some_and(|ms| ms > 0)
            );
        }
    }
    let refused = sse(&http).await?;
    ensure!(refused.status() == 429, "{}", refused.status());
    let body: serde_json::Value = refused.json().await?;
    ensure!(body["error"]["code"] == "RATE_LIMITED", "{body}");
    Ok(())
}

#[tokio::test]
async fn beyond_the_connection_limit_a_handshake_gets_503_and_open_sessions_keep_working()
-> Result<()> {
    let server = server(|b| b.max_connections(1)).await?;
    let r = room("conversation:1");
    let mut alice = member(&server, "alice", &r).await?;

    match Client::connect(&server.ws_url(), "bob", WireFormat::Json).await {
        Ok(_) => bail!("a second websocket was admitted at a limit of one"),
        Err(e) => {
            let refused = e
                .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                .and_then(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => Some(response),
                    _ => None,
                })
                .context("expected an HTTP refusal")?;
            ensure!(refused.status() == 503, "{}", refused.status());
            let retry_after = refused
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok());
            ensure!(retry_after == Some("1"), "Retry-After {retry_after:?}");
            let body: serde_json::Value =
                serde_json::from_slice(refused.body().as_deref().unwrap_or_default())?;
            ensure!(body["error"]["code"] == "SERVER_OVERLOADED", "{body}");
            ensure!(body["error"]["recoverable"] == true, "{body}");
            ensure!(body["error"]["retry_after_ms"] == 1000, "{body}");
        }
    }
    let metrics = server.gateway.hub().metrics().snapshot();
    ensure!(metrics.errors_for(streamgate::ErrorCode::ServerOverloaded) == 1);

    // The open session is untouched: it still gets publications.
    server
        .gateway
        .publish(&r, "message.created", "still here")?;
    ensure!(text(&alice.publication().await?)? == "still here");

    // Once it closes, there is room again.
    drop(alice);
    streamgate_e2e::wait_for(|| server.gateway.hub().stats().sessions == 0).await?;
    Client::connect(&server.ws_url(), "bob", WireFormat::Json).await?;
    Ok(())
}
