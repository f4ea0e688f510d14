//! The raw WebSocket transport end to end: real sockets, tokio-tungstenite clients, both
//! subprotocols.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use streamgate::{Gateway, Principal, RoomId, RoomPolicy, StaticTokens, WsConfig};
use streamgate_e2e::{Auth, Client, Event, TestServer, assert_contiguous, wait_for};
use streamgate_protocol::{
    Auth as AuthCmd, Command, ErrorCode, Ping, ServerFrame, StreamUpdate, WireFormat,
};

const TOKENS: usize = 1000;
/// Tokens, one progress, one complete.
const STREAM_LEN: u64 = TOKENS as u64 + 2;

fn gateway(queue_capacity: usize, ws: WsConfig) -> Result<Gateway> {
    let tokens = ["alice", "bob", "carol", "dave"]
        .into_iter()
        .fold(StaticTokens::new(), |t, user| {
            t.with_token(user, Principal::user(user))
        });
    Ok(Gateway::builder()
        .authenticator(tokens)
        .room_kind(
            "execution",
            RoomPolicy::default().history(5_000, Duration::from_secs(600)),
        )
        .room_kind(
            "short",
            RoomPolicy::default().history(100, Duration::from_secs(600)),
        )
        .queue_capacity(queue_capacity)
        .websocket(ws)
        .build()?)
}

async fn server() -> Result<TestServer> {
    let ws = WsConfig::default()
        .max_frame_size(16 * 1024)
        .auth_timeout(Duration::from_millis(500))
        .allowed_origins(["http://allowed.test"]);
    TestServer::start(gateway(1024, ws)?).await
}

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Streams an LLM-like run: tokens `t0..`, progress, complete. Yields now and then, as a real
/// producer awaiting its model would.
async fn produce(gateway: Gateway, room: RoomId, pace: Duration) -> Result<()> {
    let stream = gateway.stream(room);
    for i in 0..TOKENS {
        stream.token(format!("t{i}"))?;
        if i % 10 == 9 {
            tokio::time::sleep(pace).await;
        }
    }
    stream.progress(1.0, Some("generation"), Some("done"))?;
    stream.complete(serde_json::json!({ "tokens": TOKENS }))?;
    Ok(())
}

fn check_stream(publications: &[streamgate_protocol::Publication]) -> Result<()> {
    ensure!(
        publications.len() as u64 == STREAM_LEN,
        "got {} publications",
        publications.len()
    );
    assert_contiguous(publications, 1)?;
    for (i, p) in publications[..TOKENS].iter().enumerate() {
        match StreamUpdate::from_publication(p) {
            Some(Ok(StreamUpdate::Token(t))) if t.text == format!("t{i}") => {}
            other => bail!("publication {i} is not token t{i}: {other:?}"),
        }
    }
    ensure!(publications[TOKENS].event == StreamUpdate::PROGRESS);
    ensure!(publications[TOKENS + 1].event == StreamUpdate::COMPLETE);
    Ok(())
}

#[tokio::test]
async fn two_clients_receive_a_full_stream_in_order_with_both_codecs() -> Result<()> {
    for format in WireFormat::ALL {
        let server = server().await?;
        let run = room("execution:1");
        let mut a = Client::connect(&server.ws_url(), "alice", format).await?;
        let mut b = Client::connect(&server.ws_url(), "bob", format).await?;
        for client in [&mut a, &mut b] {
            let joined = client.join(&run, None).await?;
            ensure!(joined.offset == 0 && !joined.recovered && joined.missed == 0);
        }
        let producer = tokio::spawn(produce(server.gateway.clone(), run.clone(), Duration::ZERO));
        let (got_a, got_b) = tokio::join!(a.until_terminal(), b.until_terminal());
        producer.await??;
        check_stream(&got_a?)?;
        check_stream(&got_b?)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_late_joiner_resumes_from_an_offset_then_goes_live() -> Result<()> {
    let server = server().await?;
    let run = room("execution:late");
    produce(server.gateway.clone(), run.clone(), Duration::ZERO).await?;

    // It has publication 499 and wants everything after it: 500..=1002, once each.
    let mut c = Client::connect(&server.ws_url(), "carol", WireFormat::Bincode).await?;
    let joined = c.join(&run, Some((499, None))).await?;
    ensure!(joined.recovered, "{joined:?}");
    ensure!(joined.offset == STREAM_LEN && joined.missed == STREAM_LEN - 499);
    let mut missed = Vec::new();
    for _ in 0..joined.missed {
        missed.push(c.publication().await?);
    }
    assert_contiguous(&missed, 500)?;
    ensure!(missed.last().map(|p| p.event.as_str()) == Some(StreamUpdate::COMPLETE));

    server.gateway.publish(&run, "after", "live")?;
    let live = c.publication().await?;
    ensure!(
        live.offset == STREAM_LEN + 1 && live.event == "after",
        "{live:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_killed_client_reconnects_and_resumes_without_gap_or_duplicate() -> Result<()> {
    for format in WireFormat::ALL {
        let server = server().await?;
        let run = room("execution:kill");
        let mut a = Client::connect(&server.ws_url(), "alice", format).await?;
        a.join(&run, None).await?;
        let producer = tokio::spawn(produce(
            server.gateway.clone(),
            run.clone(),
            Duration::from_millis(2),
        ));

        let mut seen = Vec::new();
        while seen.len() < 300 {
            seen.push(a.publication().await?);
        }
        a.kill();
        server.wait_sessions(0).await?;

        let last = seen.last().map(|p| (p.offset, p.epoch)).unwrap_or_default();
        let mut again = Client::connect(&server.ws_url(), "alice", format).await?;
        let joined = again.join(&run, Some((last.0, Some(last.1)))).await?;
        ensure!(joined.recovered, "{joined:?}");
        seen.extend(again.until_terminal().await?);
        producer.await??;
        check_stream(&seen)?;
    }
    Ok(())
}

#[tokio::test]
async fn resuming_from_before_history_reports_not_recovered() -> Result<()> {
    let server = server().await?;
    let short = room("short:1");
    for i in 0..500 {
        server.gateway.publish(&short, "n", i)?;
    }
    let mut c = Client::connect(&server.ws_url(), "carol", WireFormat::Json).await?;
    let epoch = server.gateway.hub().stats().logged_rooms;
    ensure!(epoch == 1);
    let joined = c.join(&short, Some((10, None))).await?;
    ensure!(
        !joined.recovered && joined.missed == 0 && joined.offset == 500,
        "{joined:?}"
    );
    // A stale epoch fails too, even for an offset that history still holds.
    let mut d = Client::connect(&server.ws_url(), "dave", WireFormat::Json).await?;
    let joined_d = d.join(&short, Some((450, Some(joined.epoch + 1)))).await?;
    ensure!(!joined_d.recovered && joined_d.missed == 0, "{joined_d:?}");
    // Both continue live.
    server.gateway.publish(&short, "n", 500)?;
    ensure!(c.publication().await?.offset == 501);
    ensure!(d.publication().await?.offset == 501);
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_as_slow_and_others_keep_receiving() -> Result<()> {
    const QUEUE: usize = 32;
    const PUBLICATIONS: u64 = 2_500;
    let server = TestServer::start(gateway(QUEUE, WsConfig::default())?).await?;
    let run = room("execution:slow");
    let mut slow = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    slow.join(&run, None).await?;
    let mut fast = Client::connect(&server.ws_url(), "bob", WireFormat::Json).await?;
    fast.join(&run, None).await?;

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < PUBLICATIONS {
            let p = fast.publication().await?;
            progress_tx.send_replace(p.offset);
            got.push(p);
        }
        assert_contiguous(&got, 1)
    });

    // 20 MB in all: more than the kernel buffers between the server and the stalled client
    // (it is dropped after about 10 MB here), so its queue must overflow.
    let payload = "x".repeat(8 * 1024);
    let mut max_queued = 0;
    for i in 1..=PUBLICATIONS {
        // A closed loop for the reading client: it is never more than 8 behind.
        while *progress.borrow() + 8 < i {
            progress.changed().await?;
        }
        server.gateway.publish(&run, "blob", &payload)?;
        max_queued = max_queued.max(server.gateway.hub().stats().queued);
    }
    reader.await??;
    server.wait_sessions(1).await?;
    let metrics = server.gateway.hub().metrics().snapshot();
    ensure!(
        metrics.errors_for(ErrorCode::SlowConsumer) == 1,
        "{metrics:?}"
    );
    // The server never held more than the two queues' worth of frames.
    ensure!(max_queued <= 2 * QUEUE, "max queued {max_queued}");
    drop(slow);
    Ok(())
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_do_not_disturb_others() -> Result<()> {
    let server = server().await?;
    let lobby = room("org:acme");
    let mut bystander = Client::connect(&server.ws_url(), "bob", WireFormat::Bincode).await?;
    bystander.join(&lobby, None).await?;

    let mut c = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    let cases = [
        ("{not json", ErrorCode::ProtocolError, None),
        ("[1,2,3]", ErrorCode::ProtocolError, None),
        (
            r#"{"type":"launch_missiles","id":9}"#,
            ErrorCode::UnknownCommand,
            Some(9),
        ),
        (
            r#"{"type":"join","id":3,"room":"Bad Room"}"#,
            ErrorCode::ValidationFailed,
            Some(3),
        ),
        (
            r#"{"type":"leave","id":4,"room":"org:acme"}"#,
            ErrorCode::NotJoined,
            Some(4),
        ),
    ];
    for (text, code, id) in cases {
        c.send_text(text).await?;
        match c.recv().await? {
            ServerFrame::Error(e)
                if e.error.code == code
                    && e.error.recoverable == code.recoverable()
                    && e.id == id => {}
            other => bail!("{text}: expected {code} for {id:?}, got {other:?}"),
        }
    }
    // Still usable.
    let id = c.send(Command::Ping(Ping {})).await?;
    ensure!(matches!(c.recv().await?, ServerFrame::Pong(p) if p.id == Some(id)));

    let mut b = Client::connect(&server.ws_url(), "carol", WireFormat::Bincode).await?;
    for (bytes, code) in [
        (vec![0, 200], ErrorCode::UnknownCommand),
        (vec![1], ErrorCode::ProtocolError),
    ] {
        b.send_raw(bytes.clone()).await?;
        match b.recv().await? {
            ServerFrame::Error(e) if e.error.code == code => {}
            other => bail!("{bytes:?}: expected {code}, got {other:?}"),
        }
    }
    b.send_text("{}").await?;
    ensure!(
        matches!(b.recv().await?, ServerFrame::Error(e) if e.error.code == ErrorCode::ProtocolError)
    );

    // Over the 16 KiB limit: closed with 1009.
    c.send_text(&format!(
        r#"{{"type":"auth","token":"{}"}}"#,
        "x".repeat(20_000)
    ))
    .await?;
    loop {
        match c.next_event().await? {
            Event::Frame(ServerFrame::Disconnect(d)) => ensure!(d.code == ErrorCode::FrameTooLarge),
            Event::Frame(other) => bail!("unexpected {other:?}"),
            Event::Closed(close) => {
                ensure!(close.map(|c| u16::from(c.code)) == Some(1009));
                break;
            }
        }
    }

    server.gateway.publish(&lobby, "notice", "still here")?;
    ensure!(bystander.publication().await?.event == "notice");
    Ok(())
}

async fn expect_close(client: &mut Client, code: ErrorCode) -> Result<()> {
    loop {
        match client.next_event().await? {
            Event::Frame(ServerFrame::Disconnect(d)) => {
                ensure!(d.code == code && d.reconnect == code.recoverable(), "{d:?}");
            }
            Event::Frame(other) => bail!("expected disconnect {code}, got {other:?}"),
            Event::Closed(close) => {
                ensure!(close.map(|c| u16::from(c.code)) == Some(code.number()));
                return Ok(());
            }
        }
    }
}

#[tokio::test]
async fn credentials_are_checked_at_the_handshake_and_in_a_first_frame() -> Result<()> {
    let server = server().await?;
    let url = server.ws_url();
    for format in WireFormat::ALL {
        let mut bad = Client::open(&url, Auth::Header("mallory"), format).await?;
        expect_close(&mut bad, ErrorCode::AuthFailed).await?;

        let mut query = Client::open(&url, Auth::Query("alice"), format).await?;
        ensure!(query.expect_connected().await?.user.as_deref() == Some("alice"));

        let mut browser = Client::open(&url, Auth::None, format).await?;
        browser
            .send(Command::Auth(AuthCmd {
                token: "bob".into(),
            }))
            .await?;
        ensure!(browser.expect_connected().await?.user.as_deref() == Some("bob"));

        let mut bad_frame = Client::open(&url, Auth::None, format).await?;
        bad_frame
            .send(Command::Auth(AuthCmd {
                token: "nope".into(),
            }))
            .await?;
        expect_close(&mut bad_frame, ErrorCode::AuthFailed).await?;

        let mut silent = Client::open(&url, Auth::None, format).await?;
        expect_close(&mut silent, ErrorCode::AuthFailed).await?;
    }
    Ok(())
}

#[tokio::test]
async fn foreign_origins_and_unknown_subprotocols_are_refused() -> Result<()> {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest, http::HeaderValue};
    let server = server().await?;
    let status = |result: Result<_, Error>| match result {
        Err(Error::Http(response)) => Some(response.status().as_u16()),
        _ => None,
    };
    let mut request = server.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static("http://evil.test"));
    request
        .headers_mut()
        .insert("Authorization", HeaderValue::from_static("Bearer alice"));
    ensure!(status(tokio_tungstenite::connect_async(request).await) == Some(403));

    let mut request = server.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static("http://allowed.test"));
    request
        .headers_mut()
        .insert("Authorization", HeaderValue::from_static("Bearer alice"));
    ensure!(tokio_tungstenite::connect_async(request).await.is_ok());

    let mut request = server.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    ensure!(status(tokio_tungstenite::connect_async(request).await) == Some(400));
    Ok(())
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    let ws = WsConfig::default()
        .ping_interval(Duration::from_millis(100))
        .idle_timeout(Duration::from_millis(300));
    let server = TestServer::start(gateway(64, ws)?).await?;
    // Connect, then read nothing (so no pong is sent) until the server gives up.
    let c = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    server.wait_sessions(1).await?;
    server.wait_sessions(0).await?;
    let metrics = server.gateway.hub().metrics().snapshot();
    ensure!(
        metrics.errors_for(ErrorCode::IdleTimeout) == 1,
        "{metrics:?}"
    );
    // The client's pending pongs now hit a closed socket; it only learns the connection is gone.
    drop(c);
    Ok(())
}

#[tokio::test]
async fn event_filters_and_aborted_streams() -> Result<()> {
    let server = server().await?;
    let run = room("execution:filtered");
    let mut only_end = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    only_end
        .join_with(
            streamgate_protocol::Join::new(run.clone())
                .events([StreamUpdate::COMPLETE, StreamUpdate::ERROR]),
        )
        .await?;
    produce(server.gateway.clone(), run.clone(), Duration::ZERO).await?;
    let p = only_end.publication().await?;
    ensure!(
        p.event == StreamUpdate::COMPLETE && p.offset == STREAM_LEN,
        "{p:?}"
    );

    // The filter applies to a replay too.
    let mut late = Client::connect(&server.ws_url(), "carol", WireFormat::Json).await?;
    let joined = late
        .join_with(
            streamgate_protocol::Join::new(run.clone())
                .since(0, None)
                .events([StreamUpdate::COMPLETE]),
        )
        .await?;
    ensure!(joined.recovered && joined.missed == 1, "{joined:?}");
    ensure!(late.publication().await?.event == StreamUpdate::COMPLETE);

    // A producer that goes away mid-stream: viewers learn it from a terminal error.
    let aborted = room("execution:aborted");
    let mut viewer = Client::connect(&server.ws_url(), "bob", WireFormat::Bincode).await?;
    viewer.join(&aborted, None).await?;
    {
        let stream = server.gateway.stream(aborted.clone());
        stream.token("partial")?;
    }
    let got = viewer.until_terminal().await?;
    match got.last().and_then(StreamUpdate::from_publication) {
        Some(Ok(StreamUpdate::Error(e))) => ensure!(e.code == ErrorCode::StreamAborted),
        other => bail!("expected STREAM_ABORTED, got {other:?}"),
    }
    wait_for(|| server.gateway.hub().metrics().snapshot().active_streams == 0).await
}

#[tokio::test]
async fn a_client_dropped_by_the_server_reconnects_and_resumes() -> Result<()> {
    let server = server().await?;
    let run = room("execution:dropped");
    let mut a = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    a.join(&run, None).await?;
    let producer = tokio::spawn(produce(
        server.gateway.clone(),
        run.clone(),
        Duration::from_millis(2),
    ));

    let mut seen = Vec::new();
    while seen.len() < 300 {
        seen.push(a.publication().await?);
    }
    ensure!(
        server
            .gateway
            .hub()
            .disconnect_user("alice", ErrorCode::SlowConsumer, "test")
            == 1
    );
    // What was already queued may still arrive; then the reason, then the close code.
    loop {
        match a.next_event().await? {
            Event::Frame(ServerFrame::Publication(p)) => seen.push(p),
            Event::Frame(ServerFrame::Disconnect(d)) => {
                ensure!(d.code == ErrorCode::SlowConsumer && d.reconnect, "{d:?}");
            }
            Event::Frame(other) => bail!("unexpected {other:?}"),
            Event::Closed(close) => {
                ensure!(close.map(|c| u16::from(c.code)) == Some(ErrorCode::SlowConsumer.number()));
                break;
            }
        }
    }
    let last = seen.last().map(|p| (p.offset, p.epoch)).unwrap_or_default();
    let mut again = Client::connect(&server.ws_url(), "alice", WireFormat::Json).await?;
    ensure!(
        again
            .join(&run, Some((last.0, Some(last.1))))
            .await?
            .recovered
    );
    seen.extend(again.until_terminal().await?);
    producer.await??;
    check_stream(&seen)
}
