//! The JavaScript-facing transports in a real browser: Debian's headless chromium, driven by
//! playwright-core, loading a page served by the gateway's test server.

use std::time::Duration;

use anyhow::{Result, ensure};
use axum::{response::Html, routing::get};
use serde_json::Value;
use streamgate::{Gateway, Principal, RoomPolicy, StaticTokens};
use streamgate_e2e::{
    TestServer,
    browser::{Browser, node_dir, prerequisites},
};

const TOKENS: u64 = 1000;

fn gateway() -> Result<Gateway> {
    Ok(Gateway::builder()
        .authenticator(
            StaticTokens::new()
                .with_token("alice", Principal::user("alice"))
                .with_token("bob", Principal::user("bob")),
        )
        .room_kind(
            "execution",
            RoomPolicy::default().history(5_000, Duration::from_secs(600)),
        )
        .build()?)
}

/// The test page and the socket.io-client browser bundle from npm.
fn test_pages() -> Result<axum::Router> {
    let bundle = std::fs::read_to_string(
        node_dir().join("node_modules/socket.io-client/dist/socket.io.min.js"),
    )?;
    Ok(axum::Router::new()
        .route(
            "/test/page.html",
            get(|| async { Html(include_str!("../browser/page.html")) }),
        )
        .route(
            "/test/socket.io.min.js",
            get(move || {
                let bundle = bundle.clone();
                async move { ([("content-type", "text/javascript")], bundle) }
            }),
        ))
}

async fn start() -> Result<Option<(TestServer, Browser)>> {
    if !prerequisites("browser", true)? {
        return Ok(None);
    }
    let server = TestServer::start_with(gateway()?, test_pages()?).await?;
    let browser = Browser::open(&format!("http://{}", server.addr)).await?;
    Ok(Some((server, browser)))
}

fn produce(gateway: &Gateway, room: &str) -> Result<()> {
    let stream = gateway.stream(room.parse()?);
    for i in 0..TOKENS {
        stream.token(format!("t{i}"))?;
    }
    stream.progress(1.0, None, None)?;
    stream.complete(())?;
    Ok(())
}

fn offsets(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn browser_websocket_receives_a_full_stream_and_resumes() -> Result<()> {
    let Some((server, mut browser)) = start().await? else {
        return Ok(());
    };
    let url = format!("ws://{}/ws", server.addr);
    let joined = browser
        .eval(&format!(
            "sg.wsOpen('a', '{url}', 'alice', 'execution:b1', null)"
        ))
        .await?;
    ensure!(joined["recovered"] == Value::Bool(false), "{joined}");
    produce(&server.gateway, "execution:b1")?;
    browser
        .eval(&format!("sg.waitFor('a', {})", TOKENS + 2))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('a')").await?) == (1..=TOKENS + 2).collect::<Vec<_>>()
    );
    let tokens = browser.eval("sg.tokens('a')").await?;
    ensure!(tokens.as_array().map(Vec::len) == Some(TOKENS as usize));
    ensure!(tokens[999] == Value::from("t999"));

    // A late browser client resumes after offset 499.
    let late = browser
        .eval(&format!(
            "sg.wsOpen('late', '{url}', 'bob', 'execution:b1', 499)"
        ))
        .await?;
    ensure!(
        late["recovered"] == Value::Bool(true) && late["missed"] == Value::from(TOKENS + 2 - 499),
        "{late}"
    );
    browser
        .eval(&format!("sg.waitFor('late', {})", TOKENS + 2 - 499))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('late')").await?)
            == (500..=TOKENS + 2).collect::<Vec<_>>()
    );

    // A bad token is refused with AUTH_FAILED (close code 4001).
    let refused = browser
        .eval(&format!("sg.wsRefused('bad', '{url}', 'mallory')"))
        .await?;
    ensure!(refused["closeCode"] == Value::from(4001), "{refused}");
    ensure!(
        refused["disconnect"]["code"] == Value::from("AUTH_FAILED"),
        "{refused}"
    );
    browser.close().await
}
