//! One socket: the hub session behind it, the reader task that feeds the session's commands
//! to the hub, and the writer task that drains the session's queue into Socket.IO events and
//! acknowledgements.

use std::{
    collections::HashMap,
    future::Future,
    pin::pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Waker},
    time::Duration,
};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::{
    AckError, SendError, SocketError, SocketIo,
    extract::{AckSender, SocketRef},
};
use streamgate_core::{
    Hub, OutFrame, Principal, SessionHandle, SessionId, SessionOptions, SessionQueue,
};
use streamgate_protocol::{Ack, ClientFrame, Disconnect, ErrorCode, ServerFrame, WireFormat};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, Span};

use crate::{
    SocketIoConfig, events,
    inbound::{Link, Queued, Request},
};

/// How long the goodbye (`gateway.disconnect`, then the namespace disconnect) may wait for
/// room in a full Engine.IO buffer.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to write into a full Engine.IO buffer.
const MAX_BACKOFF: Duration = Duration::from_millis(50);
/// Frames written between two yields, so that Engine.IO's own writer task gets to run during
/// a long replay.
const YIELD_EVERY: usize = 64;

/// State of the transport shared by all its sockets.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<SocketIoConfig>,
    /// The writer tasks, which the shutdown watcher waits for.
    writers: TaskTracker,
    /// The reader tasks and the shutdown watcher.
    tasks: TaskTracker,
    shutdown_watch: OnceLock<()>,
}

impl Shared {
    pub(crate) fn new(hub: Hub, config: Arc<SocketIoConfig>) -> Self {
        Self {
            hub,
            config,
            writers: TaskTracker::new(),
            tasks: TaskTracker::new(),
            shutdown_watch: OnceLock::new(),
        }
    }

    /// On hub shutdown, once every writer has said goodbye, closes every Engine.IO connection.
    /// That is a transport close, after which `socket.io-client` reconnects by itself (to
    /// another node). Started with the first connection, inside the runtime; it holds the hub
    /// until the hub shuts down or the runtime stops.
    pub(crate) fn watch_shutdown(&self, io: &SocketIo) {
        self.shutdown_watch.get_or_init(|| {
            let hub = self.hub.clone();
            let io = io.clone();
            let writers = self.writers.clone();
            self.tasks.spawn(async move {
                hub.shutting_down().await;
                writers.close();
                if tokio::time::timeout(GOODBYE_GRACE * 2, writers.wait())
                    .await
                    .is_err()
                {
                    tracing::debug!("socket.io writers still busy at shutdown");
                }
                io.close().await;
            });
        });
    }
}

/// Whether the hub is shutting down, without waiting.
fn is_shutting_down(hub: &Hub) -> bool {
    let shutting_down = pin!(hub.shutting_down());
    shutting_down
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

/// Requests sent to the session whose answers have not been written yet, by request id: the
/// callback, and whether the client passed one.
#[derive(Default)]
pub(crate) struct Pending {
    next: AtomicU64,
    acks: Mutex<HashMap<u64, (AckSender, bool)>>,
}

impl Pending {
    fn insert(&self, ack: AckSender, wants_ack: bool) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.acks.lock().insert(id, (ack, wants_ack));
        id
    }

    fn take(&self, id: u64) -> Option<(AckSender, bool)> {
        self.acks.lock().remove(&id)
    }
}

/// The writer's half, parked in the socket's extensions until the socket has joined the
/// namespace (socketioxide refuses emits before that).
#[derive(Clone)]
struct Handoff(Arc<Mutex<Option<(Writer, Span)>>>);

/// Called by the connect middleware once the client is authenticated: opens the hub session,
/// registers the command handlers and starts the reader. The writer starts in [`start`].
pub(crate) fn open(
    shared: &Arc<Shared>,
    socket: &SocketRef,
    principal: Principal,
    device_id: Option<String>,
    client_version: Option<String>,
) {
    let config = &shared.config;
    let span = tracing::info_span!(
        "session",
        session.id = tracing::field::Empty,
        user.id = principal.user.as_deref().unwrap_or("-"),
        tenant = principal.tenant.as_deref().unwrap_or("-"),
        transport = "socketio",
    );
    let mut options = SessionOptions::new("socketio", WireFormat::Json)
        .ping_interval_ms(config.ping_interval_ms());
    if let Some(device_id) = device_id {
        options = options.device_id(device_id);
    }
    if let Some(client_version) = client_version {
        options = options.client_version(client_version);
    }
    let (session, queue) = shared.hub.open(principal, options);
    span.record("session.id", tracing::field::display(session.id()));
    let session_id = session.id();

    let closed = CancellationToken::new();
    let pending = Arc::new(Pending::default());
    let (inbound, requests) = mpsc::channel(config.max_pending_commands);
    socket.extensions.insert(Link {
        inbound,
        max_payload: config.max_payload,
    });
    // Handlers go in before the socket joins the namespace, so no early event is missed.
    for &name in events::COMMANDS {
        socket.on(name, async |_: Queued| {});
    }
    socket.on_fallback(async |_: Queued| {});
    let on_disconnect = closed.clone();
    socket.on_disconnect(move || {
        on_disconnect.cancel();
        std::future::ready(())
    });

    shared.tasks.spawn(
        read_loop(session, requests, Arc::clone(&pending), closed.clone()).instrument(span.clone()),
    );
    let writer = Writer {
        session: session_id,
        queue,
        pending,
        hub: shared.hub.clone(),
        closed,
        stall_limit: config.stall_limit(),
    };
    socket
        .extensions
        .insert(Handoff(Arc::new(Mutex::new(Some((writer, span))))));
}

/// The connect handler: the socket is in the namespace now, so the writer may start.
pub(crate) fn start(shared: &Shared, socket: &SocketRef) {
    let Some(Handoff(slot)) = socket.extensions.remove::<Handoff>() else {
        return;
    };
    let Some((writer, span)) = slot.lock().take() else {
        return;
    };
    shared
        .writers
        .spawn(writer.run(socket.clone()).instrument(span));
}

/// Feeds the socket's commands to the session one at a time, in arrival order. Ends when the
/// socket goes away; dropping the session then leaves its rooms.
async fn read_loop(
    session: SessionHandle,
    mut requests: mpsc::Receiver<Request>,
    pending: Arc<Pending>,
    closed: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            biased;
            () = closed.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
        };
        let id = pending.insert(request.ack, request.wants_ack);
        match request.command {
            Ok(cmd) => session.handle(ClientFrame { id: Some(id), cmd }).await,
            Err(error) => session.send_error(Some(id), error),
        }
    }
    closed.cancel();
    drop(session);
}

/// Why the writer stopped.
enum Stop {
    /// The hub closed the session.
    Closed,
    /// The socket is gone (disconnected by the client, or its transport closed).
    Gone,
    /// Engine.IO's buffer stayed full for too long: the client does not read.
    Stalled,
}

struct Writer {
    session: SessionId,
    queue: SessionQueue,
    pending: Arc<Pending>,
    hub: Hub,
    closed: CancellationToken,
    stall_limit: Duration,
}

impl Writer {
    async fn run(mut self, socket: SocketRef) {
        match self.pump(&socket).await {
            Stop::Gone => {}
            Stop::Closed => {
                let reason = self
                    .queue
                    .close_reason()
                    .unwrap_or_else(|| Disconnect::new(ErrorCode::ShuttingDown, "session ended"));
                self.goodbye(&socket, reason).await;
            }
            Stop::Stalled => {
                self.hub.metrics().error(ErrorCode::SlowConsumer);
                let reason = Disconnect::new(
                    ErrorCode::SlowConsumer,
                    "the connection did not keep up; reconnect and resume",
                );
                self.goodbye(&socket, reason).await;
            }
        }
        // The reader drops the session, which leaves its rooms.
        self.closed.cancel();
    }

    /// Drains the session queue, in order, until something stops it.
    async fn pump(&mut self, socket: &SocketRef) -> Stop {
        let mut written = 0;
        loop {
            let item = tokio::select! {
                biased;
                () = self.closed.cancelled() => return Stop::Gone,
                item = self.queue.recv() => item,
            };
            let Some(item) = item else {
                return Stop::Closed;
            };
            for frame in item.frames() {
                if let Err(stop) = self.deliver(socket, frame).await {
                    return stop;
                }
            }
            written += item.frames().len();
            if written >= YIELD_EVERY {
                written = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    /// Writes one frame: as an event, or as the answer to the request it carries the id of.
    async fn deliver(&self, socket: &SocketRef, frame: &OutFrame) -> Result<(), Stop> {
        let answers = match frame.frame() {
            ServerFrame::Publication(p) => {
                let event = events::for_publication(&p.event);
                if p.ack {
                    self.emit_acked(socket, event, frame, p).await?;
                } else {
                    self.emit(socket, event, frame).await?;
                }
                self.hub
                    .metrics()
                    .record_delivery(frame.created().elapsed());
                return Ok(());
            }
            ServerFrame::Connected(_) => return self.emit(socket, events::CONNECTED, frame).await,
            ServerFrame::Presence(_) => return self.emit(socket, events::PRESENCE, frame).await,
            ServerFrame::TokenExpiring(_) => {
                return self.emit(socket, events::TOKEN_EXPIRING, frame).await;
            }
            ServerFrame::Disconnect(_) => {
                return self.emit(socket, events::DISCONNECT, frame).await;
            }
            ServerFrame::Joined(f) => f.id,
            ServerFrame::Left(f) => f.id,
            ServerFrame::Pong(f) => f.id,
            ServerFrame::Reply(f) => Some(f.id),
            ServerFrame::Error(f) => f.id,
            other => {
                tracing::debug!(?other, "frame not mapped to socket.io");
                return Ok(());
            }
        };
        match answers.and_then(|id| self.pending.take(id)) {
            Some((ack, true)) => self.acknowledge(ack, frame),
            // Nobody waits for this answer: only errors are worth telling.
            _ => match frame.frame() {
                ServerFrame::Error(e) => {
                    let unrelated = OutFrame::new(ServerFrame::error(None, e.error.clone()));
                    self.emit(socket, events::ERROR, &unrelated).await
                }
                _ => Ok(()),
            },
        }
    }

    /// Answers a request's callback with the answer frame minus `type` and `id`.
    fn acknowledge(&self, ack: AckSender, frame: &OutFrame) -> Result<(), Stop> {
        let body = match ack_body(frame) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an answer");
                return Ok(());
            }
        };
        match ack.send(&body) {
            Ok(()) => Ok(()),
            // The acknowledgement is consumed by a failed send: an answer the client waits for
            // is lost, so the client must reconnect and resume.
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(Stop::Stalled),
            Err(SendError::Socket(SocketError::Closed)) => Err(Stop::Gone),
            Err(e) => {
                tracing::error!(error = %e, "cannot send an answer");
                Ok(())
            }
        }
    }

    /// Emits a frame's cached JSON encoding as-is (no per-socket re-serialization of the
    /// publication), waiting for room in Engine.IO's buffer up to the stall limit.
    async fn emit(&self, socket: &SocketRef, event: &str, frame: &OutFrame) -> Result<(), Stop> {
        let Some(raw) = raw_json(frame) else {
            return Ok(());
        };
        self.emit_value(socket, event, raw, self.stall_limit).await
    }

    /// Emits a publication sent with `ack` with a Socket.IO acknowledgement: the client's
    /// callback counts as the protocol's `ack` (the client may also send `ack` itself).
    async fn emit_acked(
        &self,
        socket: &SocketRef,
        event: &str,
        frame: &OutFrame,
        publication: &streamgate_protocol::Publication,
    ) -> Result<(), Stop> {
        let Some(raw) = raw_json(frame) else {
            return Ok(());
        };
        let timeout = self.hub.config().ack_timeout;
        let send = || {
            socket
                .timeout(timeout)
                .emit_with_ack::<_, serde_json::Value>(event, raw)
        };
        let Some(answer) = self.retry_send(send, self.stall_limit).await? else {
            return Ok(());
        };
        let ack = if publication.offset > 0 {
            Ack::offset(publication.room.clone(), publication.offset)
        } else {
            Ack::live(publication.room.clone(), publication.id.clone())
        };
        let (hub, session) = (self.hub.clone(), self.session);
        tokio::spawn(async move {
            // Any answer counts, whatever the callback passed; only silence does not.
            if let Ok(_) | Err(AckError::Decode(_)) = answer.await {
                hub.acknowledge(session, &ack);
            }
        });
        Ok(())
    }

    /// `socket.emit`, retried while Engine.IO's buffer is full (see [`Writer::retry_send`]).
    async fn emit_value<T: Serialize + ?Sized>(
        &self,
        socket: &SocketRef,
        event: &str,
        data: &T,
        patience: Duration,
    ) -> Result<(), Stop> {
        self.retry_send(|| socket.emit(event, data), patience)
            .await
            .map(|_| ())
    }

    /// Runs `send` until Engine.IO's buffer has room. socketioxide has no way to wait for
    /// room, so this backs off (1 ms doubling to 50 ms) until `patience` runs out. `None` when
    /// the send failed for a reason that only this frame suffers (logged).
    async fn retry_send<R>(
        &self,
        mut send: impl FnMut() -> Result<R, SendError>,
        patience: Duration,
    ) -> Result<Option<R>, Stop> {
        let deadline = Instant::now() + patience;
        let mut backoff = Duration::from_millis(1);
        loop {
            match send() {
                Ok(r) => return Ok(Some(r)),
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    if Instant::now() >= deadline {
                        return Err(Stop::Stalled);
                    }
                    tokio::select! {
                        biased;
                        () = self.closed.cancelled() => return Err(Stop::Gone),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(SendError::Socket(SocketError::Closed)) => return Err(Stop::Gone),
                Err(e) => {
                    tracing::error!(error = %e, "cannot emit");
                    return Ok(None);
                }
            }
        }
    }

    /// Tells the client why its session ends (`gateway.disconnect`), then ends the socket.
    ///
    /// On hub shutdown the transport is closed for all sockets at once (see
    /// [`Shared::watch_shutdown`]); otherwise the socket is disconnected from the namespace,
    /// which is the only per-socket disconnect socketioxide offers. `socket.io-client` does
    /// not reconnect after that by itself (`io server disconnect`); a client calls
    /// `socket.connect()` when `gateway.disconnect` said `reconnect: true`.
    async fn goodbye(&self, socket: &SocketRef, reason: Disconnect) {
        tracing::debug!(code = %reason.code, "socket.io session closing");
        let frame = OutFrame::new(ServerFrame::Disconnect(reason.clone()));
        if let Ok(bytes) = frame.encode(WireFormat::Json)
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(&bytes)
            && self
                .emit_value(socket, events::DISCONNECT, raw, GOODBYE_GRACE)
                .await
                .is_err()
        {
            tracing::debug!("could not send gateway.disconnect");
        }
        if reason.code == ErrorCode::ShuttingDown && is_shutting_down(&self.hub) {
            return;
        }
        let deadline = Instant::now() + GOODBYE_GRACE;
        loop {
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) if Instant::now() < deadline => {
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
                // A buffer that stays full also fails Engine.IO's next ping, which closes the
                // transport; the client then reconnects by itself.
                Ok(()) | Err(_) => return,
            }
        }
    }
}

/// The answer frame as the JSON codec writes it, minus `type` and the transport's own `id`.
fn ack_body(frame: &OutFrame) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let bytes = frame.encode(WireFormat::Json)?;
    let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)?;
    fields.shift_remove("type");
    fields.shift_remove("id");
    Ok(serde_json::Value::Object(fields))
}

/// The frame's cached JSON encoding as a raw JSON value, to emit without re-serializing
/// (logged and `None` if it cannot be encoded).
fn raw_json(frame: &OutFrame) -> Option<&RawValue> {
    let raw = frame.json_raw();
    if raw.is_none() {
        tracing::error!(frame = ?frame.frame(), "cannot encode frame as JSON");
    }
    raw
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use streamgate_protocol::{ErrorBody, Joined, Pong, Reply};

    use super::*;

    #[test]
    fn answers_lose_type_and_id() {
        let joined = OutFrame::new(ServerFrame::Joined(Joined {
            id: Some(7),
            room: "execution:1".parse().unwrap_or_else(|e| panic!("{e}")),
            epoch: 9,
            offset: 43,
            recovered: true,
            missed: 2,
        }));
        assert_eq!(
            ack_body(&joined).ok(),
            Some(
                json!({"room": "execution:1", "epoch": 9, "offset": 43, "recovered": true, "missed": 2})
            )
        );
        let pong = OutFrame::new(ServerFrame::Pong(Pong { id: Some(1) }));
        assert_eq!(ack_body(&pong).ok(), Some(json!({})));
        let reply = OutFrame::new(ServerFrame::Reply(Reply {
            id: 3,
            data: streamgate_protocol::Payload::null(),
        }));
        // As in the JSON codec, a `null` top-level field is left out.
        assert_eq!(ack_body(&reply).ok(), Some(json!({})));
        let error = OutFrame::new(ServerFrame::error(
            Some(4),
            ErrorBody::new(ErrorCode::NotJoined, "join the room first"),
        ));
        assert_eq!(
            ack_body(&error).ok(),
            Some(json!({"error": {
                "code": "NOT_JOINED",
                "message": "join the room first",
                "recoverable": false,
                "retry_after_ms": null,
            }}))
        );
    }
}
