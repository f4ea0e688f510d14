//! `GET {path}`: authenticate, join the rooms (resuming from the cursor), then stream the
//! session's queue as server-sent events.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Request},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use streamgate_core::{Credentials, Hub, OutFrame, Outbound, SessionOptions, SessionQueue};
use streamgate_protocol::{
    ClientFrame, Command, Disconnect, ErrorCode, Join, RoomId, ServerFrame, WireFormat,
};
use tracing::{Instrument, Span};

use crate::{
    Cursor,
    registry::{Live, Registration},
    request::{self, Refusal},
    routes::Shared,
};

/// Opens one event stream, or refuses the request.
pub(crate) async fn open(shared: &Arc<Shared>, request: Request) -> Result<Response, Refusal> {
    let config = &shared.config;
    let hub = &shared.hub;
    let (parts, _body) = request.into_parts();
    let params = request::params(parts.uri.query())?;
    let credentials = Credentials {
        token: request::token(&parts.headers, params.token, &config.cookie_name),
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    };
    hub.admit(credentials.remote_addr)
        .map_err(|error| Refusal::with(admission_status(error.code), error).counted())?;
    let principal = request::authenticate(hub, &credentials).await?;
    let rooms = rooms(&params.rooms, config.max_rooms)?;
    let resume = cursor(&parts.headers, params.last_event_id.as_deref())?;
    if resume.len() > config.max_rooms {
        return Err(Refusal::invalid(format!(
            "the cursor has more than {} rooms",
            config.max_rooms
        )));
    }
    // axum answers HEAD with the GET handler; a probe must not open a session or join rooms.
    if parts.method == Method::HEAD {
        return Ok(([(header::CONTENT_TYPE, "text/event-stream")]).into_response());
    }

    let span = tracing::info_span!(
        "session",
        session.id = tracing::field::Empty,
        user.id = principal.user.as_deref().unwrap_or("-"),
        tenant = principal.tenant.as_deref().unwrap_or("-"),
        transport = "sse",
    );
    let (session, queue) = hub.open(
        principal,
        SessionOptions::new("sse", WireFormat::Json).ping_interval_ms(config.keep_alive_ms()),
    );
    span.record("session.id", tracing::field::display(session.id()));

    // Rooms the cursor knows start at the cursor's position: until their `joined` (or first
    // replayed publication) arrives, that is still where the client is.
    let mut positions = Cursor::new();
    async {
        for room in &rooms {
            let mut join = Join::new(room.clone());
            if let Some(p) = resume.get(room) {
                join = join.since(p.offset, Some(p.epoch));
                positions.set(room, p);
            }
            session.handle(ClientFrame::new(Command::Join(join))).await;
        }
        tracing::debug!(
            rooms = rooms.len(),
            resumed = !resume.is_empty(),
            "sse stream opened"
        );
    }
    .instrument(span.clone())
    .await;

    let registration = shared.registry.insert(Live::new(session, rooms));
    let stream = EventStream {
        queue,
        hub: hub.clone(),
        cursor: positions,
        item: None,
        next: 0,
        retry: Some(config.retry),
        done: false,
        span,
        _registration: registration,
    };
    let events = futures_util::stream::unfold(stream, |stream| {
        let span = stream.span.clone();
        stream.next().instrument(span)
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(config.keep_alive))
        .into_response();
    // Reverse proxies (nginx) must not buffer a live stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The HTTP status of a connection the hub did not admit: `429` for the per-address quota
/// (`RATE_LIMITED`), `503` when the server is at its connection limit (`SERVER_OVERLOADED`)
/// or refuses for any other reason.
fn admission_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The distinct rooms of the `rooms` parameter, in order, at most `max`.
fn rooms(items: &[String], max: usize) -> Result<Vec<RoomId>, Refusal> {
    let mut rooms: Vec<RoomId> = Vec::new();
    for item in items {
        let room: RoomId = item
            .parse()
            .map_err(|e| Refusal::invalid(format!("rooms: {e}")))?;
        if rooms.contains(&room) {
            continue;
        }
        if rooms.len() == max {
            return Err(Refusal::invalid(format!(
                "rooms: at most {max} rooms per connection"
            )));
        }
        rooms.push(room);
    }
    Ok(rooms)
}

/// The resume cursor: the `Last-Event-ID` header (sent by a reconnecting `EventSource`, so it is
/// the newest) or else the `last_event_id` query parameter (a cursor the client stored).
fn cursor(headers: &HeaderMap, query: Option<&str>) -> Result<Cursor, Refusal> {
    let header = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Refusal::invalid("Last-Event-ID: not a cursor"))?,
        ),
        None => None,
    };
    match header.or(query).map(str::trim) {
        None | Some("") => Ok(Cursor::new()),
        Some(text) => text
            .parse()
            .map_err(|e| Refusal::invalid(format!("Last-Event-ID: {e}"))),
    }
}

/// The body of one SSE response: the session's queue as events, then `disconnect`.
struct EventStream {
    queue: SessionQueue,
    hub: Hub,
    /// Where the client is in each room, as far as the events sent so far tell.
    cursor: Cursor,
    /// The queue item being written and the index of its next frame (a replay batch can hold
    /// thousands of frames; they become events one at a time).
    item: Option<Outbound>,
    next: usize,
    /// Sent with the first event.
    retry: Option<Duration>,
    done: bool,
    span: Span,
    /// Unregisters the session, and so drops its handle, when the response ends or the client
    /// goes away (hyper drops the body).
    _registration: Registration,
}

impl EventStream {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done {
                tracing::debug!("sse stream ended");
                return None;
            }
            if let Some(frame) = self.next_frame() {
                if let Some(event) = self.event(&frame) {
                    return Some((Ok(event), self));
                }
                continue;
            }
            // Frames come one at a time; hyper keeps polling while the body is ready and
            // writes what it collected in one go, so ready frames share a write.
            if let Some(item) = self.queue.recv().await {
                self.item = Some(item);
                self.next = 0;
                continue;
            }
            self.done = true;
            let reason = self
                .queue
                .close_reason()
                .unwrap_or_else(|| Disconnect::new(ErrorCode::ShuttingDown, "session ended"));
            tracing::debug!(code = %reason.code, "sse session closed by the hub");
            let frame = OutFrame::new(ServerFrame::Disconnect(reason));
            if let Some(event) = self.event(&frame) {
                return Some((Ok(event), self));
            }
        }
    }

    fn next_frame(&mut self) -> Option<Arc<OutFrame>> {
        let frame = self.item.as_ref()?.frames().get(self.next).cloned();
        match frame {
            Some(_) => self.next += 1,
            None => self.item = None,
        }
        frame
    }

    /// `event: <type>`, `data: <JSON frame>`, and `id: <cursor>` when the frame moves the cursor.
    fn event(&mut self, frame: &OutFrame) -> Option<Event> {
        let bytes = match frame.encode(WireFormat::Json) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode frame");
                return None;
            }
        };
        let Ok(data) = std::str::from_utf8(&bytes) else {
            tracing::error!("JSON frame is not UTF-8");
            return None;
        };
        let mut event = Event::default()
            .event(event_name(frame.frame(), data))
            .data(data);
        if self.track(frame.frame()) {
            event = event.id(self.cursor.to_string());
        }
        if let Some(retry) = self.retry.take() {
            event = event.retry(retry);
        }
        if frame.publication().is_some() {
            self.hub
                .metrics()
                .record_delivery(frame.created().elapsed());
        }
        Some(event)
    }

    /// Updates the cursor for `frame`; `true` when it changed.
    ///
    /// A logged publication moves its room. A `joined` sets the room's position, except when
    /// missed publications follow it (`recovered` with `missed > 0`): the client is then still
    /// where it resumed from until the replay arrives, and the room keeps its old position.
    /// A `left` forgets the room.
    fn track(&mut self, frame: &ServerFrame) -> bool {
        match frame {
            ServerFrame::Publication(p) if p.is_logged() => {
                self.cursor.set(&p.room, p.position());
                true
            }
            ServerFrame::Joined(j) if !(j.recovered && j.missed > 0) => {
                self.cursor.set(&j.room, j.position());
                true
            }
            ServerFrame::Left(l) => self.cursor.remove(&l.room).is_some(),
            _ => false,
        }
    }
}

/// The SSE event name: the frame's `type` in the JSON codec.
fn event_name<'a>(frame: &ServerFrame, json: &'a str) -> &'a str {
    match frame {
        ServerFrame::Connected(_) => "connected",
        ServerFrame::Publication(_) => "pub",
        ServerFrame::Joined(_) => "joined",
        ServerFrame::Left(_) => "left",
        ServerFrame::Pong(_) => "pong",
        ServerFrame::Reply(_) => "reply",
        ServerFrame::Error(_) => "error",
        ServerFrame::Presence(_) => "presence",
        ServerFrame::Disconnect(_) => "disconnect",
        ServerFrame::TokenExpiring(_) => "token.expiring",
        // A frame type added later: the JSON codec writes `type` first.
        _ => json_type(json).unwrap_or("message"),
    }
}

fn json_type(json: &str) -> Option<&str> {
    let rest = json.strip_prefix(r#"{"type":""#)?;
    let name = rest.get(..rest.find('"')?)?;
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use streamgate_protocol::{Joined, Left, Pong, Position};

    use super::*;

    fn room(id: &str) -> RoomId {
        id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    #[test]
    fn event_names_are_the_json_types() {
        for (frame, name) in [
            (ServerFrame::Pong(Pong { id: Some(1) }), "pong"),
            (
                ServerFrame::Disconnect(Disconnect::new(ErrorCode::SlowConsumer, "x")),
                "disconnect",
            ),
        ] {
            let json = WireFormat::Json
                .encode_server(&frame)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            assert_eq!(event_name(&frame, &json), name);
            assert_eq!(json_type(&json), Some(name));
        }
        assert_eq!(
            json_type(r#"{"type":"new_frame","x":1}"#),
            Some("new_frame")
        );
        assert_eq!(json_type(r#"{"type":"bad\nname"}"#), None);
        assert_eq!(json_type(r#"{"id":1}"#), None);
    }

    #[test]
    fn refused_admissions_map_their_code_to_the_status() {
        assert_eq!(
            admission_status(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            admission_status(ErrorCode::ServerOverloaded),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn a_hub_at_its_connection_limit_is_answered_503_with_retry_after()
    -> Result<(), Box<dyn std::error::Error>> {
        let hub = Hub::builder(streamgate_core::HubConfig::default().max_connections(1)).build()?;
        let shared = Arc::new(Shared {
            hub: hub.clone(),
            config: Arc::new(crate::SseConfig::default()),
            registry: Arc::default(),
        });
        let _open = hub.connect(
            streamgate_core::Principal::user("u1"),
            "sse",
            WireFormat::Json,
        );
        let request = Request::builder()
            .uri("/sse?rooms=r:a")
            .body(axum::body::Body::empty())?;
        let Err(refusal) = open(&shared, request).await else {
            return Err("a second session was admitted".into());
        };
        assert_eq!(refusal.code(), ErrorCode::ServerOverloaded);
        // The hub counted it; the route must not count it again.
        assert!(!refusal.uncounted());
        assert_eq!(
            hub.metrics()
                .snapshot()
                .errors_for(ErrorCode::ServerOverloaded),
            1
        );
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(body["error"]["code"], "SERVER_OVERLOADED");
        assert_eq!(body["error"]["retry_after_ms"], 1000);
        assert_eq!(hub.stats().sessions, 1);
        Ok(())
    }

    #[test]
    fn rooms_are_distinct_valid_and_bounded() {
        let items = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ok = rooms(&items(&["r:a", "r:b", "r:a"]), 2).unwrap_or_default();
        assert_eq!(ok, [room("r:a"), room("r:b")]);
        assert!(rooms(&items(&["r:a", "r:b", "r:c"]), 2).is_err());
        assert!(rooms(&items(&["r:a", ""]), 2).is_err());
        assert!(rooms(&items(&["R:a"]), 2).is_err());
        assert_eq!(rooms(&[], 2).map(|r| r.len()).ok(), Some(0));
    }

    #[test]
    fn the_header_cursor_wins_over_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("1;r:a~1~2"));
        let c = cursor(&headers, Some("1;r:a~1~1")).unwrap_or_default();
        assert_eq!(
            c.get(&room("r:a")),
            Some(Position {
                epoch: 1,
                offset: 2
            })
        );
        let c = cursor(&HeaderMap::new(), Some("1;r:a~1~1")).unwrap_or_default();
        assert_eq!(
            c.get(&room("r:a")),
            Some(Position {
                epoch: 1,
                offset: 1
            })
        );
        assert!(cursor(&HeaderMap::new(), Some("")).is_ok_and(|c| c.is_empty()));
        assert!(cursor(&HeaderMap::new(), Some("2;r:a~1~1")).is_err());
    }

    #[test]
    fn the_cursor_follows_joins_publications_and_leaves() -> Result<(), Box<dyn std::error::Error>>
    {
        let hub = Hub::builder(streamgate_core::HubConfig::default()).build()?;
        let (session, queue) = hub.connect(
            streamgate_core::Principal::user("u1"),
            "sse",
            WireFormat::Json,
        );
        let registry = Arc::new(crate::registry::Registry::default());
        let mut stream = EventStream {
            queue,
            hub,
            cursor: Cursor::new(),
            item: None,
            next: 0,
            retry: None,
            done: false,
            span: Span::none(),
            _registration: registry.insert(Live::new(session, [])),
        };
        let a = room("r:a");
        let joined = |recovered, missed| {
            ServerFrame::Joined(Joined {
                id: None,
                room: a.clone(),
                epoch: 5,
                offset: 10,
                recovered,
                missed,
            })
        };
        assert!(stream.track(&joined(false, 0)));
        assert_eq!(stream.cursor.to_string(), "1;r:a~5~10");
        // A replay follows: the room stays where it was until the replayed publications come.
        stream.cursor.set(
            &a,
            Position {
                epoch: 5,
                offset: 7,
            },
        );
        assert!(!stream.track(&joined(true, 3)));
        assert_eq!(stream.cursor.to_string(), "1;r:a~5~7");
        assert!(stream.track(&joined(true, 0)));
        assert_eq!(stream.cursor.to_string(), "1;r:a~5~10");
        assert!(!stream.track(&ServerFrame::Pong(Pong { id: None })));
        assert!(stream.track(&ServerFrame::Left(Left {
            id: None,
            room: a.clone()
        })));
        assert!(!stream.track(&ServerFrame::Left(Left { id: None, room: a })));
        assert_eq!(stream.cursor.to_string(), "1");
        Ok(())
    }
}
