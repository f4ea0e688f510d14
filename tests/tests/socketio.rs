//! The Socket.IO transport end to end: real sockets, the official npm `socket.io-client`
//! (driven through `tests/node/socketio-client.mjs`), Engine.IO's default long-polling
//! handshake and WebSocket upgrade.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use streamgate::{
    ErrorCode, Gateway, Principal, RoomId, RoomPolicy, StaticTokens, StreamHandle,
    protocol::{Publication, StreamUpdate},
};
use streamgate_e2e::{
    TestServer, assert_contiguous,
    browser::prerequisites,
    node::{NodeClient, is_event, is_joined, publication},
};
use streamgate_socketio::SocketIoConfig;

const TOKENS: usize = 1000;
/// Tokens, one progress, one complete.
const STREAM_LEN: u64 = TOKENS as u64 + 2;

/// A gateway with the Socket.IO transport (mounted by the facade with the `socketio` feature),
/// or `None` when Node or the npm packages are missing (and `STREAMGATE_E2E_REQUIRE` is not
/// `1`).
async fn server(test: &str) -> Result<Option<TestServer>> {
    if !prerequisites(test, false)? {
        return Ok(None);
    }
    let tokens = ["alice", "bob", "carol"]
        .into_iter()
        .fold(StaticTokens::new(), |t, user| {
            t.with_token(user, Principal::user(user))
        });
    let gateway = Gateway::builder()
        .authenticator(tokens)
        .room_kind(
            "execution",
            RoomPolicy::default().history(5_000, Duration::from_secs(600)),
        )
        .socketio(SocketIoConfig::default().allowed_origins(["http://allowed.test"]))
        .build()?;
    Ok(Some(TestServer::start(gateway).await?))
}

fn namespace_url(server: &TestServer) -> String {
    format!("http://{}/streaming", server.addr)
}

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Streams tokens `t{i}` for `i` in `range`, as an LLM run would.
fn tokens(stream: &StreamHandle, range: std::ops::Range<usize>) -> Result<()> {
    for i in range {
        stream.token(format!("t{i}"))?;
    }
    Ok(())
}

/// Ends a run: progress, then complete.
fn finish(stream: StreamHandle) -> Result<()> {
    stream.progress(1.0, Some("generation"), Some("done"))?;
    stream.complete(json!({ "tokens": TOKENS }))?;
    Ok(())
}

/// A whole run: 1 000 tokens, progress, complete.
fn produce(stream: StreamHandle) -> Result<()> {
    tokens(&stream, 0..TOKENS)?;
    finish(stream)
}

/// The whole stream, in order: tokens as `stream.data`, progress as `stream.data`, then
/// `stream.complete`.
fn check_stream(publications: &[(String, Publication)]) -> Result<()> {
    ensure!(
        publications.len() as u64 == STREAM_LEN,
        "got {} publications",
        publications.len()
    );
    let only: Vec<Publication> = publications.iter().map(|(_, p)| p.clone()).collect();
    assert_contiguous(&only, 1)?;
    for (i, (event, p)) in publications[..TOKENS].iter().enumerate() {
        ensure!(event == "stream.data", "token {i} came as {event}");
        match StreamUpdate::from_publication(p) {
            Some(Ok(StreamUpdate::Token(t))) if t.text == format!("t{i}") => {}
            other => bail!("publication {i} is not token t{i}: {other:?}"),
        }
    }
    let (event, progress) = &publications[TOKENS];
    ensure!(event == "stream.data" && progress.event == StreamUpdate::PROGRESS);
    let (event, complete) = &publications[TOKENS + 1];
    ensure!(event == "stream.complete" && complete.event == StreamUpdate::COMPLETE);
    Ok(())
}

#[tokio::test]
async fn a_full_stream_arrives_complete_and_in_order() -> Result<()> {
    let Some(server) = server("socketio: full stream").await? else {
        return Ok(());
    };
    let run = room("execution:1");
    let args = [format!("room={run}")];
    // One client upgrades from long-polling to WebSocket (the default), one is WebSocket-only.
    let mut a = NodeClient::spawn(&namespace_url(&server), "alice", &args).await?;
    let mut b = NodeClient::spawn(
        &namespace_url(&server),
        "bob",
        &[args[0].clone(), "transports=websocket".into()],
    )
    .await?;
    for client in [&mut a, &mut b] {
        let connected = client.next().await?;
        ensure!(is_event(&connected, "gateway.connected"), "{connected}");
        let user = connected["data"]["user"].clone();
        ensure!(user == "alice" || user == "bob", "{connected}");
        ensure!(
            connected["data"]["ping_interval_ms"] == 25_000,
            "{connected}"
        );
        let joined = client.next().await?;
        ensure!(is_joined(&joined), "{joined}");
        ensure!(
            joined["ack"]
                == json!({"room": "execution:1", "epoch": joined["ack"]["epoch"], "offset": 0, "recovered": false, "missed": 0}),
            "{joined}"
        );
    }
    produce(server.gateway.stream(run.clone()))?;

    for client in [a, b] {
        let lines = client.finish().await?;
        let publications: Vec<_> = lines
            .iter()
            .filter_map(publication)
            .collect::<Result<_>>()?;
        check_stream(&publications)?;
        // Every field of the publication is there, as in the JSON codec.
        let first = lines
            .iter()
            .find(|l| is_event(l, "stream.data"))
            .ok_or_else(|| anyhow!("no stream.data"))?;
        for field in [
            "type", "room", "offset", "epoch", "id", "event", "data", "ts", "priority", "ack",
        ] {
            ensure!(
                first["data"].get(field).is_some(),
                "{field} missing: {first}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_late_joiner_gets_what_it_missed_once_then_live() -> Result<()> {
    let Some(server) = server("socketio: late joiner").await? else {
        return Ok(());
    };
    let run = room("execution:late");
    produce(server.gateway.stream(run.clone()))?;

    let mut c = NodeClient::spawn(
        &namespace_url(&server),
        "carol",
        &[
            format!("room={run}"),
            "since=499".into(),
            format!("until={}", STREAM_LEN + 1),
        ],
    )
    .await?;
    c.until(|l| is_event(l, "gateway.connected")).await?;
    // The join's answer comes first, then exactly the missed publications.
    let joined = c.next().await?;
    ensure!(
        is_joined(&joined),
        "expected the join answer first, got {joined}"
    );
    let ack = &joined["ack"];
    ensure!(
        ack["recovered"] == true
            && ack["offset"] == STREAM_LEN
            && ack["missed"] == STREAM_LEN - 499,
        "{joined}"
    );
    let last = c
        .until(|l| publication(l).is_some_and(|p| p.is_ok_and(|(_, p)| p.offset == STREAM_LEN)))
        .await?;
    ensure!(is_event(&last, "stream.complete"), "{last}");

    // Then live.
    server.gateway.publish(&run, "after", "live")?;
    let lines_before = c.seen().len();
    let seen = c.finish().await?;
    let publications: Vec<_> = seen.iter().filter_map(publication).collect::<Result<_>>()?;
    let only: Vec<Publication> = publications.iter().map(|(_, p)| p.clone()).collect();
    ensure!(
        only.len() as u64 == STREAM_LEN - 499 + 1,
        "{} publications",
        only.len()
    );
    assert_contiguous(&only, 500)?;
    let live = &seen[lines_before];
    ensure!(
        is_event(live, "stream.data") && live["data"]["event"] == "after",
        "{live}"
    );
    Ok(())
}

#[tokio::test]
async fn a_dropped_client_reconnects_and_resumes_without_gap_or_duplicate() -> Result<()> {
    let Some(server) = server("socketio: forced disconnect").await? else {
        return Ok(());
    };
    let run = room("execution:drop");
    let mut a =
        NodeClient::spawn(&namespace_url(&server), "alice", &[format!("room={run}")]).await?;
    a.until(is_joined).await?;

    let stream = server.gateway.stream(run.clone());
    tokens(&stream, 0..400)?;
    // Mid-stream: once the client has some of it, the server drops it.
    a.until(|l| publication(l).is_some_and(|p| p.is_ok_and(|(_, p)| p.offset >= 100)))
        .await?;
    ensure!(
        server
            .gateway
            .hub()
            .disconnect_user("alice", ErrorCode::SlowConsumer, "test")
            == 1
    );
    // The producer goes on while the client is away.
    tokens(&stream, 400..TOKENS)?;
    finish(stream)?;

    let goodbye = a.until(|l| is_event(l, "gateway.disconnect")).await?;
    ensure!(
        goodbye["data"]["code"] == "SLOW_CONSUMER" && goodbye["data"]["reconnect"] == true,
        "{goodbye}"
    );
    // A namespace disconnect; the client reconnects as docs/protocol-socketio.md says.
    let closed = a.until(|l| l["kind"] == "disconnect").await?;
    ensure!(closed["reason"] == "io server disconnect", "{closed}");
    let connected_again = a.until(|l| is_event(l, "gateway.connected")).await?;
    ensure!(connected_again["data"]["user"] == "alice");
    let rejoined = a.until(is_joined).await?;
    ensure!(rejoined["ack"]["recovered"] == true, "{rejoined}");

    let publications = {
        let lines = a.finish().await?;
        lines
            .iter()
            .filter_map(publication)
            .collect::<Result<Vec<_>>>()?
    };
    check_stream(&publications)?;
    Ok(())
}

#[tokio::test]
async fn on_shutdown_the_transport_closes_so_the_client_reconnects_by_itself() -> Result<()> {
    let Some(server) = server("socketio: shutdown").await? else {
        return Ok(());
    };
    let run = room("execution:shutdown");
    let mut a =
        NodeClient::spawn(&namespace_url(&server), "alice", &[format!("room={run}")]).await?;
    a.until(is_joined).await?;
    server.gateway.shutdown();
    let goodbye = a.until(|l| is_event(l, "gateway.disconnect")).await?;
    ensure!(
        goodbye["data"]["code"] == "SHUTTING_DOWN" && goodbye["data"]["reconnect"] == true,
        "{goodbye}"
    );
    // Not a namespace disconnect: `transport close`, after which socket.io-client reconnects
    // on its own. This server is gone for good, so the reconnected client is refused.
    let closed = a.until(|l| l["kind"] == "disconnect").await?;
    ensure!(closed["reason"] == "transport close", "{closed}");
    let lines = a.finish().await?;
    let refused = lines.last().cloned().unwrap_or_default();
    ensure!(refused["kind"] == "connect_error", "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_bad_token_is_refused_with_a_json_connect_error() -> Result<()> {
    let Some(server) = server("socketio: refusal").await? else {
        return Ok(());
    };
    let refused = NodeClient::spawn(&namespace_url(&server), "not-a-token", &[])
        .await?
        .finish()
        .await?;
    let last = refused.last().cloned().unwrap_or_default();
    ensure!(last["kind"] == "connect_error", "{refused:?}");
    ensure!(
        last["error"]["code"] == "AUTH_FAILED" && last["error"]["recoverable"] == false,
        "{last}"
    );
    ensure!(server.gateway.hub().stats().sessions == 0);
    Ok(())
}

#[tokio::test]
async fn commands_are_answered_through_their_callbacks() -> Result<()> {
    let Some(server) = server("socketio: commands").await? else {
        return Ok(());
    };
    let lines = NodeClient::spawn(&namespace_url(&server), "bob", &["probe=1".into()])
        .await?
        .finish()
        .await?;
    let answer = |event: &str| -> Result<Value> {
        lines
            .iter()
            .find(|l| l["kind"] == "ack" && l["event"] == event)
            .map(|l| l["ack"].clone())
            .ok_or_else(|| anyhow!("no answer to {event}: {lines:?}"))
    };
    let code = |event: &str| -> Result<Value> { Ok(answer(event)?["error"]["code"].clone()) };
    ensure!(answer("ping")? == json!({}));
    ensure!(code("leave")? == "NOT_JOINED");
    ensure!(code("join")? == "VALIDATION_FAILED");
    ensure!(code("ack")? == "VALIDATION_FAILED");
    ensure!(code("subscribe")? == "UNKNOWN_COMMAND");
    Ok(())
}

#[tokio::test]
async fn foreign_origins_are_refused() -> Result<()> {
    let Some(server) = server("socketio: origins").await? else {
        return Ok(());
    };
    let url = format!("http://{}/socket.io/?EIO=4&transport=polling", server.addr);
    let client = reqwest::Client::new();
    let status = |origin: Option<&'static str>| {
        let mut request = client.get(&url);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { Ok::<_, anyhow::Error>(request.send().await?.status().as_u16()) }
    };
    ensure!(status(Some("http://evil.test")).await? == 403);
    ensure!(status(Some("http://allowed.test")).await? == 200);
    ensure!(status(None).await? == 200);
    Ok(())
}
