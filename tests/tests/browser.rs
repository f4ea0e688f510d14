//! The JavaScript-facing transports in a real browser: Debian's headless chromium, driven by
//! playwright-core, loading a page served by the gateway's test server.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::Value;
use streamgate::{ErrorCode, Gateway, Principal, RoomPolicy, StaticTokens};
use streamgate_e2e::{
    TestServer,
    browser::{Browser, prerequisites, test_pages},
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

async fn start() -> Result<Option<(TestServer, Browser)>> {
    if !prerequisites("browser", true)? {
        return Ok(None);
    }
    let server = TestServer::start_with(gateway()?, test_pages()?).await?;
    let browser = Browser::open(&format!("http://{}", server.addr)).await?;
    Ok(Some((server, browser)))
}

/// Like [`produce`], pausing every 10 tokens so that clients can drop in the middle.
async fn produce_paced(gateway: Gateway, room: String) -> Result<()> {
    let stream = gateway.stream(room.parse()?);
    for i in 0..TOKENS {
        stream.token(format!("t{i}"))?;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stream.progress(1.0, None, None)?;
    stream.complete(())?;
    Ok(())
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
    ensure!(joined["recovered"] == false, "{joined}");
    produce(&server.gateway, "execution:b1")?;
    browser
        .eval(&format!("sg.waitFor('a', {})", TOKENS + 2))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('a')").await?) == (1..=TOKENS + 2).collect::<Vec<_>>()
    );
    let tokens = browser.eval("sg.tokens('a')").await?;
    ensure!(tokens.as_array().map(Vec::len) == Some(TOKENS as usize));
    ensure!(tokens[999] == "t999");

    // A late browser client resumes after offset 499.
    let late = browser
        .eval(&format!(
            "sg.wsOpen('late', '{url}', 'bob', 'execution:b1', 499)"
        ))
        .await?;
    ensure!(
        late["recovered"] == true && late["missed"] == TOKENS + 2 - 499,
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
    ensure!(refused["closeCode"] == 4001, "{refused}");
    ensure!(refused["disconnect"]["code"] == "AUTH_FAILED", "{refused}");
    browser.close().await
}

#[tokio::test]
async fn browser_event_source_resumes_by_itself_after_a_forced_disconnect() -> Result<()> {
    let Some((server, mut browser)) = start().await? else {
        return Ok(());
    };
    let base = format!("http://{}", server.addr);
    let joined = browser
        .eval(&format!(
            "sg.sseOpen('s', '{base}/sse?rooms=execution:s1&token=alice')"
        ))
        .await?;
    ensure!(joined["room"] == "execution:s1", "{joined}");

    let producer = tokio::spawn(produce_paced(server.gateway.clone(), "execution:s1".into()));
    browser.eval("sg.waitFor('s', 300)").await?;
    // The server drops the stream (recoverable): EventSource reconnects with Last-Event-ID.
    ensure!(
        server
            .gateway
            .hub()
            .disconnect_user("alice", ErrorCode::SlowConsumer, "test")
            == 1
    );
    producer.await??;
    browser
        .eval(&format!("sg.waitFor('s', {})", TOKENS + 2))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('s')").await?) == (1..=TOKENS + 2).collect::<Vec<_>>()
    );
    ensure!(
        browser.eval("sg.opens('s')").await? == 2,
        "the browser reconnected once"
    );

    // A late EventSource resumes from a stored cursor (room~epoch~offset) at offset 499.
    let epoch = joined["epoch"].as_u64().unwrap_or_default();
    let cursor = format!("1;execution:s1~{epoch}~499");
    let late = browser
        .eval(&format!(
            "sg.sseOpen('late', '{base}/sse?rooms=execution:s1&token=bob&last_event_id={cursor}')"
        ))
        .await?;
    ensure!(late["recovered"] == true, "{late}");
    browser
        .eval(&format!("sg.waitFor('late', {})", TOKENS + 2 - 499))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('late')").await?)
            == (500..=TOKENS + 2).collect::<Vec<_>>()
    );

    // A bad token is refused with 401 and AUTH_FAILED.
    let refused = browser
        .eval(&format!(
            "sg.fetchJson('{base}/sse?rooms=execution:s1&token=mallory')"
        ))
        .await?;
    ensure!(refused["status"] == 401, "{refused}");
    ensure!(
        refused["body"]["error"]["code"] == "AUTH_FAILED",
        "{refused}"
    );
    browser.close().await
}

#[tokio::test]
async fn browser_socketio_client_receives_a_stream_and_is_refused_a_bad_token() -> Result<()> {
    let Some((server, mut browser)) = start().await? else {
        return Ok(());
    };
    let base = format!("http://{}", server.addr);
    let joined = browser
        .eval(&format!(
            "sg.sioOpen('io', '{base}', 'alice', 'execution:io1', null)"
        ))
        .await?;
    ensure!(joined["recovered"] == false, "{joined}");
    produce(&server.gateway, "execution:io1")?;
    browser
        .eval(&format!("sg.waitFor('io', {})", TOKENS + 2))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('io')").await?) == (1..=TOKENS + 2).collect::<Vec<_>>()
    );
    ensure!(browser.eval("sg.events('io').at(-1)").await? == "stream.complete");

    let late = browser
        .eval(&format!(
            "sg.sioOpen('io-late', '{base}', 'bob', 'execution:io1', 499)"
        ))
        .await?;
    ensure!(
        late["recovered"] == true && late["missed"] == TOKENS + 2 - 499,
        "{late}"
    );
    browser
        .eval(&format!("sg.waitFor('io-late', {})", TOKENS + 2 - 499))
        .await?;
    ensure!(
        offsets(&browser.eval("sg.offsets('io-late')").await?)
            == (500..=TOKENS + 2).collect::<Vec<_>>()
    );

    let refused = browser
        .eval(&format!("sg.sioRefused('io-bad', '{base}', 'mallory')"))
        .await?;
    ensure!(refused["code"] == "AUTH_FAILED", "{refused}");
    browser.close().await
}

#[tokio::test]
async fn one_publication_reaches_websocket_sse_and_socketio_clients_of_one_hub() -> Result<()> {
    let Some((server, mut browser)) = start().await? else {
        return Ok(());
    };
    let base = format!("http://{}", server.addr);
    let ws = format!("ws://{}/ws", server.addr);
    browser
        .eval(&format!(
            "sg.wsOpen('w', '{ws}', 'alice', 'conversation:all', null)"
        ))
        .await?;
    browser
        .eval(&format!(
            "sg.sseOpen('s', '{base}/sse?rooms=conversation:all&token=alice')"
        ))
        .await?;
    browser
        .eval(&format!(
            "sg.sioOpen('i', '{base}', 'bob', 'conversation:all', null)"
        ))
        .await?;
    ensure!(server.gateway.hub().stats().sessions == 3);

    let room = "conversation:all".parse()?;
    server.gateway.publish(
        &room,
        "message.created",
        serde_json::json!({ "text": "hello, everyone" }),
    )?;
    for name in ["w", "s", "i"] {
        browser.eval(&format!("sg.waitFor('{name}', 1)")).await?;
        let got = browser.eval(&format!("sg.events('{name}')")).await?;
        ensure!(
            got == serde_json::json!(["message.created"]),
            "{name}: {got}"
        );
        ensure!(
            offsets(&browser.eval(&format!("sg.offsets('{name}')")).await?) == [1],
            "{name}"
        );
    }
    browser.close().await
}
