//! The SSE transport end to end: real sockets, a real HTTP client (reqwest) and an SSE parser
//! (eventsource-stream) that keeps the last event id the way a browser's `EventSource` does.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource};
use futures_util::{StreamExt, stream::BoxStream};
use serde_json::{Value, json};
use streamgate::{
    ErrorCode, Gateway, Position, Principal, RoomId, RoomPolicy, StaticTokens, Transport,
};
use streamgate_e2e::{STEP_TIMEOUT, TestServer, assert_contiguous};
use streamgate_protocol::{
    ClientFrame, Command, Connected, Join, Joined, Leave, Ping, Publication, ServerFrame,
    StreamUpdate, WireFormat,
};
use streamgate_sse::{Cursor, SseConfig, SseTransport};

const TOKENS: usize = 1000;
/// Tokens, one progress, one complete.
const STREAM_LEN: u64 = TOKENS as u64 + 2;
const MAX_FRAME: usize = 1024;
const MAX_ROOMS: usize = 4;

/// A gateway whose SSE transport (mounted by the facade with the `sse` feature) uses `sse`.
fn gateway_with(tokens: StaticTokens, sse: SseConfig) -> Result<Gateway> {
    let tokens = ["alice", "bob", "carol", "dave"]
        .into_iter()
        .fold(tokens, |t, user| t.with_token(user, Principal::user(user)));
    Ok(Gateway::builder()
        .authenticator(tokens)
        .room_kind(
            "execution",
            RoomPolicy::default().history(5_000, Duration::from_secs(600)),
        )
        .sse(sse)
        .build()?)
}

fn config() -> SseConfig {
    SseConfig::default()
        .max_frame_size(MAX_FRAME)
        .max_rooms(MAX_ROOMS)
        .keep_alive(Duration::from_millis(500))
        .retry(Duration::from_millis(250))
}

async fn server() -> Result<TestServer> {
    TestServer::start(gateway_with(StaticTokens::new(), config())?).await
}

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Streams an LLM-like run: tokens `t0..`, progress, complete; returns the last position.
async fn produce(gateway: Gateway, room: RoomId, pace: Duration) -> Result<Position> {
    let stream = gateway.stream(room);
    for i in 0..TOKENS {
        stream.token(format!("t{i}"))?;
        if i % 10 == 9 {
            tokio::time::sleep(pace).await;
        }
    }
    stream.progress(1.0, Some("generation"), Some("done"))?;
    Ok(stream.complete(json!({ "tokens": TOKENS }))?)
}

fn check_stream(publications: &[Publication]) -> Result<()> {
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

fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(STEP_TIMEOUT)
        .build()?)
}

/// A GET request to the event stream; `query` without the leading `?`.
fn stream_request(server: &TestServer, query: &str) -> Result<reqwest::RequestBuilder> {
    Ok(http()?.get(format!("http://{}/sse?{query}", server.addr)))
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    tokio::time::timeout(STEP_TIMEOUT, request.send())
        .await
        .context("no response")?
        .context("request failed")
}

/// An open event stream.
struct Listener {
    events: BoxStream<'static, Result<SseEvent, EventStreamError<reqwest::Error>>>,
    /// The id of the latest event that had one (what `EventSource` sends as `Last-Event-ID`).
    last_id: String,
    connected: Option<Connected>,
}

impl Listener {
    /// Opens the stream (expecting `200 text/event-stream`) and reads the `connected` event.
    async fn open(request: reqwest::RequestBuilder) -> Result<Self> {
        let response = send(request).await?;
        ensure!(
            response.status() == 200,
            "status {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        ensure!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let mut listener = Self {
            events: response.bytes_stream().eventsource().boxed(),
            last_id: String::new(),
            connected: None,
        };
        let first = listener.next_event().await?.context("no first event")?;
        ensure!(
            first.retry == Some(Duration::from_millis(250)),
            "retry advice on the first event: {first:?}"
        );
        match decode(&first)? {
            ServerFrame::Connected(c) => {
                ensure!(c.ping_interval_ms == 500, "{c:?}");
                listener.connected = Some(c);
            }
            other => bail!("expected connected, got {other:?}"),
        }
        Ok(listener)
    }

    fn session(&self) -> String {
        self.connected
            .as_ref()
            .map(|c| c.session.clone())
            .unwrap_or_default()
    }

    /// The next event, `None` when the response ended.
    async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        let event = tokio::time::timeout(STEP_TIMEOUT, self.events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no event within {STEP_TIMEOUT:?}"))?;
        match event {
            None => Ok(None),
            Some(Err(e)) => bail!("event stream failed: {e}"),
            Some(Ok(event)) => {
                self.last_id.clone_from(&event.id);
                Ok(Some(event))
            }
        }
    }

    /// The next frame; fails when the stream ends.
    async fn frame(&mut self) -> Result<(ServerFrame, SseEvent)> {
        let event = self.next_event().await?.context("the stream ended")?;
        Ok((decode(&event)?, event))
    }

    async fn joined(&mut self) -> Result<(Joined, SseEvent)> {
        match self.frame().await? {
            (ServerFrame::Joined(j), event) => Ok((j, event)),
            (other, _) => bail!("expected joined, got {other:?}"),
        }
    }

    /// The next publication; its event id must be a cursor holding its position.
    async fn publication(&mut self) -> Result<Publication> {
        match self.frame().await? {
            (ServerFrame::Publication(p), event) => {
                let cursor: Cursor = event.id.parse()?;
                ensure!(
                    cursor.get(&p.room) == Some(p.position()),
                    "id {} does not hold {:?}",
                    event.id,
                    p.position()
                );
                Ok(p)
            }
            (other, _) => bail!("expected a publication, got {other:?}"),
        }
    }

    async fn until_terminal(&mut self) -> Result<Vec<Publication>> {
        let mut out = Vec::new();
        loop {
            let p = self.publication().await?;
            let terminal = p.event == StreamUpdate::COMPLETE || p.event == StreamUpdate::ERROR;
            out.push(p);
            if terminal {
                return Ok(out);
            }
        }
    }
}

/// The frame in an event's data; the event name must be the frame's JSON `type`.
fn decode(event: &SseEvent) -> Result<ServerFrame> {
    let json: Value = serde_json::from_str(&event.data)?;
    ensure!(
        json["type"] == event.event.as_str(),
        "event {} carries {}",
        event.event,
        event.data
    );
    Ok(WireFormat::Json.decode_server(event.data.as_bytes(), usize::MAX)?)
}

/// `POST /sse/commands`: the status and the JSON body.
async fn post(
    server: &TestServer,
    token: Option<&str>,
    session: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Result<(u16, Value)> {
    let mut request = http()?
        .post(format!("http://{}/sse/commands", server.addr))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("x-streamgate-session", session);
    }
    let response = send(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

fn command(cmd: Command, id: u64) -> Result<Vec<u8>> {
    Ok(WireFormat::Json
        .encode_client(&ClientFrame::new(cmd).with_id(id))?
        .to_vec())
}

/// Checks a refusal body: `{"error":{"code":…,"message":…,"recoverable":…,"retry_after_ms":null}}`.
fn ensure_error(status: u16, body: &Value, want_status: u16, code: ErrorCode) -> Result<()> {
    ensure!(status == want_status, "status {status}, body {body}");
    let error = &body["error"];
    ensure!(error["code"] == code.as_str(), "{body}");
    ensure!(error["message"].is_string(), "{body}");
    ensure!(error["recoverable"] == code.recoverable(), "{body}");
    ensure!(error["retry_after_ms"].is_null(), "{body}");
    Ok(())
}

async fn refused(request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let response = send(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test]
async fn a_full_stream_arrives_complete_and_in_order() -> Result<()> {
    let server = server().await?;
    let run = room("execution:1");
    let mut a =
        Listener::open(stream_request(&server, "rooms=execution:1")?.bearer_auth("alice")).await?;
    let (joined, event) = a.joined().await?;
    ensure!(joined.offset == 0 && !joined.recovered && joined.missed == 0);
    // The join already tells where to resume from, before any publication.
    ensure!(
        event.id == format!("1;execution:1~{}~0", joined.epoch),
        "{}",
        event.id
    );

    let producer = tokio::spawn(produce(server.gateway.clone(), run, Duration::ZERO));
    let got = a.until_terminal().await?;
    producer.await??;
    check_stream(&got)?;
    // Every delivered publication had its latency recorded.
    ensure!(server.gateway.hub().metrics().snapshot().latency.count >= STREAM_LEN);
    Ok(())
}

#[tokio::test]
async fn a_late_client_resumes_from_a_cursor_then_goes_live() -> Result<()> {
    let server = server().await?;
    let run = room("execution:late");
    let end = produce(server.gateway.clone(), run.clone(), Duration::ZERO).await?;
    ensure!(end.offset == STREAM_LEN);
    let cursor = format!("1;execution:late~{}~499", end.epoch);

    // A stored cursor in the query (percent-encoded, as URLSearchParams writes it), and the
    // header an EventSource sends when it reconnects.
    let by_query = stream_request(
        &server,
        &format!(
            "rooms=execution%3Alate&last_event_id={}",
            cursor.replace(';', "%3B").replace(':', "%3A")
        ),
    )?
    .bearer_auth("carol");
    let by_header = stream_request(&server, "rooms=execution:late")?
        .bearer_auth("dave")
        .header("last-event-id", &cursor);
    let mut clients = Vec::new();
    for request in [by_query, by_header] {
        let mut c = Listener::open(request).await?;
        let (joined, event) = c.joined().await?;
        ensure!(joined.recovered, "{joined:?}");
        ensure!(joined.offset == STREAM_LEN && joined.missed == STREAM_LEN - 499);
        // Missed publications follow, so the join does not move the cursor.
        ensure!(event.id.is_empty(), "{}", event.id);
        let mut missed = Vec::new();
        for _ in 0..joined.missed {
            missed.push(c.publication().await?);
        }
        assert_contiguous(&missed, 500)?;
        ensure!(missed.last().map(|p| p.event.as_str()) == Some(StreamUpdate::COMPLETE));
        clients.push(c);
    }

    server.gateway.publish(&run, "after", "live")?;
    for c in &mut clients {
        let live = c.publication().await?;
        ensure!(
            live.offset == STREAM_LEN + 1 && live.event == "after",
            "{live:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_dropped_stream_reconnects_with_last_event_id_without_gap_or_duplicate() -> Result<()> {
    let server = server().await?;
    let run = room("execution:kill");
    let mut a =
        Listener::open(stream_request(&server, "rooms=execution:kill")?.bearer_auth("alice"))
            .await?;
    a.joined().await?;
    let producer = tokio::spawn(produce(
        server.gateway.clone(),
        run.clone(),
        Duration::from_millis(2),
    ));

    let mut seen = Vec::new();
    while seen.len() < 300 {
        seen.push(a.publication().await?);
    }
    let closed = server
        .gateway
        .hub()
        .disconnect_user("alice", ErrorCode::SlowConsumer, "test");
    ensure!(closed == 1);
    // What was already written still arrives; then `disconnect`, then the response ends.
    let reason = loop {
        let before = a.last_id.clone();
        match a.frame().await? {
            (ServerFrame::Publication(p), _) => seen.push(p),
            (ServerFrame::Disconnect(d), event) => {
                // (A parser keeps the previous id for an event without one, as browsers do.)
                ensure!(event.id == before, "disconnect moves no cursor");
                break d;
            }
            (other, _) => bail!("unexpected {other:?}"),
        }
    };
    ensure!(
        reason.code == ErrorCode::SlowConsumer && reason.reconnect,
        "{reason:?}"
    );
    ensure!(a.next_event().await?.is_none(), "the response ends");
    server.wait_sessions(0).await?;

    // What a browser does: the same URL, with the last id it saw.
    let last_id = a.last_id.clone();
    let last = seen.last().map(Publication::position).unwrap_or_default();
    let cursor: Cursor = last_id.parse()?;
    ensure!(cursor.get(&run) == Some(last), "{last_id} vs {last:?}");
    let mut again = Listener::open(
        stream_request(&server, "rooms=execution:kill")?
            .bearer_auth("alice")
            .header("last-event-id", &last_id),
    )
    .await?;
    let (joined, _) = again.joined().await?;
    ensure!(joined.recovered, "{joined:?}");
    seen.extend(again.until_terminal().await?);
    producer.await??;
    check_stream(&seen)
}

#[tokio::test]
async fn credentials_come_from_the_header_the_cookie_or_the_query() -> Result<()> {
    let server = server().await?;
    let (status, body) =
        refused(stream_request(&server, "rooms=execution:1")?.bearer_auth("mallory")).await?;
    ensure_error(status, &body, 401, ErrorCode::AuthFailed)?;
    let (status, body) = refused(stream_request(&server, "rooms=execution:1")?).await?;
    ensure_error(status, &body, 401, ErrorCode::AuthFailed)?;
    let (status, body) =
        refused(stream_request(&server, "rooms=execution:1&token=mallory")?).await?;
    ensure_error(status, &body, 401, ErrorCode::AuthFailed)?;
    let response = send(stream_request(&server, "")?).await?;
    ensure!(
        response.headers().get("www-authenticate").is_some(),
        "{:?}",
        response.headers()
    );
    server.wait_sessions(0).await?;

    let by_cookie = stream_request(&server, "rooms=execution:1")?
        .header("cookie", "theme=dark; streamgate_token=bob");
    let by_query = stream_request(&server, "rooms=execution:1&token=carol")?;
    let mut bob = Listener::open(by_cookie).await?;
    let mut carol = Listener::open(by_query).await?;
    for (listener, user) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let connected = listener.connected.clone().context("connected")?;
        ensure!(connected.user.as_deref() == Some(user), "{connected:?}");
        listener.joined().await?;
    }
    server.wait_sessions(2).await
}

#[tokio::test]
async fn bad_rooms_and_cursors_are_refused_before_a_session_opens() -> Result<()> {
    let server = server().await?;
    let too_many = (0..=MAX_ROOMS)
        .map(|i| format!("execution:{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let too_many_in_cursor = (0..=MAX_ROOMS)
        .map(|i| format!(";execution:{i}~1~1"))
        .collect::<String>();
    for query in [
        "rooms=Execution:1".to_owned(),
        "rooms=execution:1,,execution:2".to_owned(),
        format!("rooms={too_many}"),
        "rooms=execution:1&last_event_id=2;execution:1~1~1".to_owned(),
        "rooms=execution:1&last_event_id=1;execution:1~1~01".to_owned(),
        format!("rooms=execution:1&last_event_id=1{too_many_in_cursor}"),
        "rooms=execution:1&token=alice&token=alice".to_owned(),
    ] {
        let (status, body) = refused(stream_request(&server, &query)?.bearer_auth("alice")).await?;
        ensure_error(status, &body, 400, ErrorCode::ValidationFailed)
            .with_context(|| query.clone())?;
    }
    let (status, body) = refused(
        stream_request(&server, "rooms=execution:1")?
            .bearer_auth("alice")
            .header("last-event-id", "1;execution:1"),
    )
    .await?;
    ensure_error(status, &body, 400, ErrorCode::ValidationFailed)?;
    // A HEAD probe is answered without opening a session.
    let head = send(
        http()?
            .head(format!("http://{}/sse?rooms=execution:1", server.addr))
            .bearer_auth("alice"),
    )
    .await?;
    ensure!(head.status() == 200, "{}", head.status());
    ensure!(server.gateway.hub().stats().sessions == 0);
    Ok(())
}

#[tokio::test]
async fn listed_origins_get_cors_others_are_refused_and_anonymous_sessions_take_no_commands()
-> Result<()> {
    const APP: &str = "http://app.test";
    let server = TestServer::start(gateway_with(
        StaticTokens::new().allow_anonymous(),
        config().allowed_origins([APP]),
    )?)
    .await?;

    let (status, body) = refused(
        stream_request(&server, "rooms=execution:1")?
            .bearer_auth("alice")
            .header("origin", "http://evil.test"),
    )
    .await?;
    ensure_error(status, &body, 403, ErrorCode::PermissionDenied)?;

    let response = send(
        stream_request(&server, "rooms=execution:1")?
            .bearer_auth("alice")
            .header("origin", APP),
    )
    .await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ensure!(response.status() == 200);
    ensure!(header("access-control-allow-origin").as_deref() == Some(APP));
    ensure!(header("access-control-allow-credentials").as_deref() == Some("true"));
    drop(response);

    let preflight = send(
        http()?
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{}/sse/commands", server.addr),
            )
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-streamgate-session"),
    )
    .await?;
    ensure!(preflight.status() == 204, "{}", preflight.status());
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ensure!(allowed.contains("x-streamgate-session"), "{allowed}");

    // Without credentials the stream is anonymous (the authenticator allows it), but session
    // ids are not secrets, so nobody can send commands for an anonymous session.
    let anonymous = Listener::open(stream_request(&server, "rooms=execution:1")?).await?;
    ensure!(
        anonymous
            .connected
            .as_ref()
            .is_some_and(|c| c.user.is_none())
    );
    let session = anonymous.session();
    let ping = command(Command::Ping(Ping {}), 1)?;
    let (status, body) = post(&server, None, Some(&session), ping.clone()).await?;
    ensure_error(status, &body, 403, ErrorCode::PermissionDenied)?;
    let (status, body) = post(&server, Some("alice"), Some(&session), ping).await?;
    ensure_error(status, &body, 403, ErrorCode::PermissionDenied)
}

#[tokio::test]
async fn commands_travel_over_post_and_their_answers_over_the_stream() -> Result<()> {
    let server = server().await?;
    let mut a =
        Listener::open(stream_request(&server, "rooms=execution:a")?.bearer_auth("alice")).await?;
    a.joined().await?;
    let session = a.session();
    let s = Some(session.as_str());

    let second = room("execution:b");
    let (status, body) = post(
        &server,
        Some("alice"),
        s,
        command(Command::Join(Join::new(second.clone())), 7)?,
    )
    .await?;
    ensure!(
        status == 202 && body == json!({ "accepted": true }),
        "{status} {body}"
    );
    let (joined, event) = a.joined().await?;
    ensure!(joined.id == Some(7) && joined.room == second, "{joined:?}");
    let cursor: Cursor = event.id.parse()?;
    ensure!(cursor.len() == 2 && cursor.get(&second) == Some(joined.position()));
    server.gateway.publish(&second, "note", "hello b")?;
    ensure!(a.publication().await?.room == second);

    let (status, _) = post(
        &server,
        Some("alice"),
        s,
        command(Command::Ping(Ping {}), 8)?,
    )
    .await?;
    ensure!(status == 202);
    match a.frame().await? {
        (ServerFrame::Pong(pong), _) => ensure!(pong.id == Some(8), "{pong:?}"),
        (other, _) => bail!("expected pong, got {other:?}"),
    }

    // Refusals: who, which session, what body.
    let ping = command(Command::Ping(Ping {}), 9)?;
    let (status, body) = post(&server, Some("bob"), s, ping.clone()).await?;
    ensure_error(status, &body, 403, ErrorCode::PermissionDenied)?;
    let (status, body) = post(&server, None, s, ping.clone()).await?;
    ensure_error(status, &body, 401, ErrorCode::AuthFailed)?;
    let (status, body) = post(&server, Some("alice"), Some("s999999"), ping.clone()).await?;
    ensure_error(status, &body, 404, ErrorCode::NotJoined)?;
    let (status, body) = post(&server, Some("alice"), None, ping.clone()).await?;
    ensure_error(status, &body, 400, ErrorCode::ValidationFailed)?;
    let oversize = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_FRAME));
    let (status, body) = post(&server, Some("alice"), s, oversize).await?;
    ensure_error(status, &body, 413, ErrorCode::FrameTooLarge)?;
    let (status, body) = post(&server, Some("alice"), s, r#"{"type":"ping""#).await?;
    ensure_error(status, &body, 400, ErrorCode::ProtocolError)?;
    let (status, body) = post(&server, Some("alice"), s, r#"{"type":"subscribe"}"#).await?;
    ensure_error(status, &body, 400, ErrorCode::UnknownCommand)?;
    let (status, body) = post(
        &server,
        Some("alice"),
        s,
        r#"{"type":"auth","token":"alice"}"#,
    )
    .await?;
    ensure_error(status, &body, 400, ErrorCode::ProtocolError)?;

    // At most MAX_ROOMS rooms per connection; a leave gives one back.
    for i in 2..MAX_ROOMS {
        let join = Command::Join(Join::new(room(&format!("execution:c{i}"))));
        ensure!(post(&server, Some("alice"), s, command(join, 10)?).await?.0 == 202);
        a.joined().await?;
    }
    let one_more = Command::Join(Join::new(room("execution:over")));
    let (status, body) = post(&server, Some("alice"), s, command(one_more.clone(), 11)?).await?;
    ensure_error(status, &body, 400, ErrorCode::ValidationFailed)?;
    let leave = Command::Leave(Leave {
        room: second.clone(),
    });
    ensure!(
        post(&server, Some("alice"), s, command(leave, 12)?)
            .await?
            .0
            == 202
    );
    match a.frame().await? {
        (ServerFrame::Left(left), event) => {
            ensure!(left.id == Some(12) && left.room == second, "{left:?}");
            let cursor: Cursor = event.id.parse()?;
            ensure!(cursor.get(&second).is_none() && cursor.len() == MAX_ROOMS - 1);
        }
        (other, _) => bail!("expected left, got {other:?}"),
    }
    ensure!(
        post(&server, Some("alice"), s, command(one_more, 13)?)
            .await?
            .0
            == 202
    );
    a.joined().await?;

    // Once the stream is gone, so is the session.
    drop(a);
    server.wait_sessions(0).await?;
    let (status, body) = post(&server, Some("alice"), s, ping).await?;
    ensure_error(status, &body, 404, ErrorCode::NotJoined)
}

#[tokio::test]
async fn one_cursor_resumes_every_room_of_a_connection() -> Result<()> {
    let server = server().await?;
    let (x, y, z) = (
        room("execution:x"),
        room("execution:y"),
        room("execution:z"),
    );
    let url = "rooms=execution:x,execution:y,execution:z";
    let mut a = Listener::open(stream_request(&server, url)?.bearer_auth("alice")).await?;
    for _ in 0..3 {
        a.joined().await?;
    }
    for (r, n) in [(&x, 1), (&y, 1), (&x, 2), (&x, 3), (&y, 2)] {
        server.gateway.publish(r, "n", n)?;
    }
    for _ in 0..5 {
        a.publication().await?;
    }
    // z has had no publication: its place in the cursor comes from its `joined`.
    let last_id = a.last_id.clone();
    let cursor: Cursor = last_id.parse()?;
    ensure!(cursor.len() == 3, "{last_id}");
    ensure!(cursor.get(&x).map(|p| p.offset) == Some(3), "{last_id}");
    ensure!(cursor.get(&y).map(|p| p.offset) == Some(2), "{last_id}");
    ensure!(cursor.get(&z).map(|p| p.offset) == Some(0), "{last_id}");
    drop(a);
    server.wait_sessions(0).await?;

    // Published while the client was away.
    for (r, n) in [(&x, 4), (&z, 1), (&x, 5), (&y, 3)] {
        server.gateway.publish(r, "n", n)?;
    }
    let mut b = Listener::open(
        stream_request(&server, url)?
            .bearer_auth("alice")
            .header("last-event-id", &last_id),
    )
    .await?;
    let mut resumed = Vec::new();
    for (r, missed) in [(&x, 2), (&y, 1), (&z, 1)] {
        let (joined, _) = b.joined().await?;
        ensure!(
            &joined.room == r && joined.recovered && joined.missed == missed,
            "{joined:?}"
        );
        for _ in 0..missed {
            resumed.push(b.publication().await?);
        }
    }
    let got: Vec<(String, u64)> = resumed
        .iter()
        .map(|p| (p.room.to_string(), p.offset))
        .collect();
    let want = [
        ("execution:x", 4),
        ("execution:x", 5),
        ("execution:y", 3),
        ("execution:z", 1),
    ]
    .map(|(r, o)| (r.to_owned(), o));
    ensure!(got == want, "{got:?}");

    // And live again, with one cursor for all three rooms.
    server.gateway.publish(&y, "n", 4)?;
    let live = b.publication().await?;
    ensure!(live.room == y && live.offset == 4, "{live:?}");
    let cursor: Cursor = b.last_id.parse()?;
    let offsets: Vec<u64> = [&x, &y, &z]
        .iter()
        .filter_map(|r| cursor.get(r).map(|p| p.offset))
        .collect();
    ensure!(offsets == [5, 4, 1], "{}", b.last_id);
    Ok(())
}

#[tokio::test]
async fn the_wire_has_retry_event_data_id_and_keep_alive_comments() -> Result<()> {
    let server = server().await?;
    let response = send(stream_request(&server, "rooms=execution:w")?.bearer_auth("alice")).await?;
    ensure!(response.status() == 200);
    ensure!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            == Some("no-cache")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    // The connected and joined events, then (the stream being idle) a keep-alive comment.
    while !text.contains("\n\n:") {
        let chunk = tokio::time::timeout(STEP_TIMEOUT, body.next())
            .await
            .context("no keep-alive")?
            .context("stream ended")??;
        text.push_str(std::str::from_utf8(&chunk)?);
    }
    let session = server.gateway.hub().stats().sessions;
    ensure!(session == 1);
    let mut events = text.split("\n\n");
    let connected = events.next().unwrap_or_default();
    let mut lines = connected.lines();
    ensure!(lines.next() == Some("event: connected"), "{connected}");
    ensure!(
        lines
            .next()
            .is_some_and(|l| l.starts_with(r#"data: {"type":"connected","session":"s"#)),
        "{connected}"
    );
    ensure!(lines.next() == Some("retry: 250"), "{connected}");
    let joined = events.next().unwrap_or_default();
    let lines: Vec<&str> = joined.lines().collect();
    ensure!(lines.first() == Some(&"event: joined"), "{joined}");
    ensure!(
        lines
            .get(2)
            .is_some_and(|l| l.starts_with("id: 1;execution:w~")),
        "{joined}"
    );
    ensure!(events.next().is_some_and(|e| e.starts_with(':')), "{text}");
    Ok(())
}

#[tokio::test]
async fn the_sse_transport_is_named_and_checks_its_config() -> Result<()> {
    let transport = SseTransport::new(SseConfig::default())?;
    ensure!(transport.name() == "sse");
    ensure!(SseTransport::new(SseConfig::default().max_rooms(0)).is_err());
    Ok(())
}
