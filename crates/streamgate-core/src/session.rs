use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, OnceLock},
    time::Instant,
};

use parking_lot::{Mutex, RwLock};
use streamgate_protocol::{
    ClientFrame, Command, Disconnect, ErrorBody, ErrorCode, Pong, Reply, RoomId, ServerFrame,
    WireFormat,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::{
    Credentials, Hub, OutFrame, Outbound, Principal, RateKey, RateSubject,
    ack::{AckKey, AckTracker},
    command_kind,
    queue::Queue,
    ratelimit::rate_limited,
};

/// Identifies a session within one hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);

impl SessionId {
    /// The numeric id.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for SessionId {
    type Err = InvalidSessionId;

    /// Parses the `Display` form, `s42`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .map(SessionId)
            .ok_or(InvalidSessionId)
    }
}

/// A string that is not a session id (`s` followed by digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct InvalidSessionId;

/// What a transport knows about a new connection, for [`Hub::open`].
///
/// ```
/// use streamgate_core::{SessionOptions, WireFormat};
///
/// let options = SessionOptions::new("socketio", WireFormat::Json)
///     .ping_interval_ms(25_000)
///     .device_id("d-1")
///     .client_version("web/4.8");
/// assert_eq!(options.device_id.as_deref(), Some("d-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Transport name (`ws`, `sse`, `socketio`), for metrics and logs.
    pub transport: &'static str,
    /// Wire format of the session's frames.
    pub format: WireFormat,
    /// Heartbeat interval announced in the `connected` frame (0: none).
    pub ping_interval_ms: u64,
    /// Client-supplied device id, kept on the session.
    pub device_id: Option<String>,
    /// Client-supplied client version, kept on the session.
    pub client_version: Option<String>,
}

impl SessionOptions {
    /// Options with only the transport and format set.
    #[must_use]
    pub fn new(transport: &'static str, format: WireFormat) -> Self {
        Self {
            transport,
            format,
            ping_interval_ms: 0,
            device_id: None,
            client_version: None,
        }
    }

    /// Sets the announced heartbeat interval.
    #[must_use]
    pub fn ping_interval_ms(mut self, ms: u64) -> Self {
        self.ping_interval_ms = ms;
        self
    }

    /// Sets the device id.
    #[must_use]
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    /// Sets the client version.
    #[must_use]
    pub fn client_version(mut self, version: impl Into<String>) -> Self {
        self.client_version = Some(version.into());
        self
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// What happened to one enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// Volatile frame dropped on a full queue.
    Dropped,
    /// The queue overflowed: the session is now closing with `SLOW_CONSUMER`.
    Overflowed,
    /// The session is already closing.
    Closed,
}

/// State shared between the hub (fan-out), the session's handle and its queue.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) transport: &'static str,
    pub(crate) format: WireFormat,
    device_id: Option<String>,
    client_version: Option<String>,
    pub(crate) principal: RwLock<Arc<Principal>>,
    pub(crate) rooms: Mutex<HashSet<RoomId>>,
    /// Publications sent with `ack` that wait for this session's acknowledgement.
    pub(crate) acks: Mutex<HashMap<AckKey, Arc<AckTracker>>>,
    pub(crate) queue: Queue,
    closed: CancellationToken,
    close_reason: OnceLock<Disconnect>,
    pub(crate) connected_at: Instant,
    /// The credential expiry (seconds) the session was last warned about.
    pub(crate) warned_for: std::sync::atomic::AtomicU64,
    /// When the session last did something a person does, for presence's `away`.
    pub(crate) activity: crate::presence::Activity,
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        options: SessionOptions,
        principal: Principal,
        capacity: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            transport: options.transport,
            format: options.format,
            device_id: options.device_id,
            client_version: options.client_version,
            principal: RwLock::new(Arc::new(principal)),
            rooms: Mutex::new(HashSet::new()),
            acks: Mutex::new(HashMap::new()),
            queue: Queue::new(capacity),
            closed: CancellationToken::new(),
            close_reason: OnceLock::new(),
            connected_at: Instant::now(),
            warned_for: std::sync::atomic::AtomicU64::new(0),
            activity: crate::presence::Activity::default(),
        })
    }

    pub(crate) fn principal(&self) -> Arc<Principal> {
        Arc::clone(&self.principal.read())
    }

    /// Enqueues without ever waiting. A full queue drops a volatile item, and otherwise closes
    /// the session with `SLOW_CONSUMER`: the client reconnects and resumes from its position.
    pub(crate) fn push(&self, item: Outbound, volatile: bool) -> Push {
        if self.is_closing() {
            return Push::Closed;
        }
        match self.queue.push(item) {
            Ok(()) => Push::Queued,
            Err(_) if volatile => Push::Dropped,
            Err(_) => {
                let first = self.fail(Disconnect::new(
                    ErrorCode::SlowConsumer,
                    "the connection did not keep up; reconnect and resume",
                ));
                if first {
                    Push::Overflowed
                } else {
                    Push::Closed
                }
            }
        }
    }

    /// Whether the session is closing. The reason is set before the token is cancelled, so this
    /// is the same answer as `closed.is_cancelled()` for one atomic load, without the token's
    /// mutex: fan-out asks it once per recipient.
    fn is_closing(&self) -> bool {
        self.close_reason.get().is_some()
    }

    /// Marks the session as closing for `reason`; `true` if it was not closing yet.
    pub(crate) fn fail(&self, reason: Disconnect) -> bool {
        let first = self.close_reason.set(reason).is_ok();
        self.closed.cancel();
        self.queue.close();
        first
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// A transport's handle on one session: it feeds the session's commands to the hub. Dropping
/// it disconnects the session (leaves its rooms, updates presence).
pub struct SessionHandle {
    pub(crate) hub: Hub,
    pub(crate) shared: Arc<SessionShared>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// The session's id.
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The device id the client gave at the handshake.
    #[must_use]
    pub fn device_id(&self) -> Option<&str> {
        self.shared.device_id.as_deref()
    }

    /// The client version the client gave at the handshake.
    #[must_use]
    pub fn client_version(&self) -> Option<&str> {
        self.shared.client_version.as_deref()
    }

    /// Who the session is.
    #[must_use]
    pub fn principal(&self) -> Arc<Principal> {
        self.shared.principal()
    }

    /// Handles one decoded client frame: built-in commands (join, leave, ping, typing, refresh,
    /// ack, presence) are answered here; the answer (or a typed error carrying the request id) is queued
    /// to the session in order with its publications.
    pub async fn handle(&self, frame: ClientFrame) {
        let hub = &self.hub;
        hub.metrics().message_in();
        hub.activity(&self.shared, &frame.cmd);
        let id = frame.id;
        // Pipeline: (decoded and validated by the transport) → rate limit → authorize (inside
        // each hub operation) → handle.
        if let Err(error) = self.rate_limit(&frame.cmd) {
            self.send_error(id, error);
            return;
        }
        let result = match frame.cmd {
            Command::Join(join) => hub.join(&self.shared, id, join),
            Command::Leave(leave) => hub.leave(&self.shared, id, &leave.room),
            Command::Ping(_) => {
                self.send(ServerFrame::Pong(Pong { id }));
                Ok(())
            }
            // An ack of something not (or no longer) awaited is still fine: retries and
            // reconnects make duplicates normal.
            Command::Ack(ack) => hub.require_member(&self.shared, &ack.room).map(|()| {
                hub.acknowledge(self.shared.id, &ack);
                self.reply(id);
            }),
            Command::TypingStart(t) => hub
                .typing(&self.shared, &t.room, true)
                .map(|()| self.reply(id)),
            Command::TypingStop(t) => hub
                .typing(&self.shared, &t.room, false)
                .map(|()| self.reply(id)),
            // Awaited here, not spawned: the answer stays in order with this session's frames.
            Command::Command(cmd) => hub
                .user_command(&self.shared, cmd)
                .await
                .map(|data| self.reply_with(id, data)),
            Command::Refresh(refresh) => self.refresh(refresh.token).await.map(|()| self.reply(id)),
            Command::Presence(query) => hub
                .presence_query(&self.shared, &query.room)
                .map(|data| self.reply_with(id, data)),
            Command::Auth(_) => Err(ErrorBody::new(
                ErrorCode::ProtocolError,
                "already authenticated",
            )),
            _ => Err(ErrorBody::new(
                ErrorCode::UnknownCommand,
                "unsupported command",
            )),
        };
        if let Err(error) = result {
            self.send_error(id, error);
        }
    }

    fn rate_limit(&self, command: &Command) -> Result<(), ErrorBody> {
        let principal = self.shared.principal();
        let key = RateKey::new(
            RateSubject::of(&principal, self.shared.id),
            command_kind(command),
        );
        self.hub
            .inner
            .rate_limiter
            .check(&key)
            .map_err(|wait| rate_limited(wait, "too many requests; retry later"))
    }

    async fn refresh(&self, token: String) -> Result<(), ErrorBody> {
        let fresh = self
            .hub
            .authenticate(&Credentials::bearer(token))
            .await
            .map_err(|e| ErrorBody::new(e.code(), e.to_string()))?;
        let mut current = self.shared.principal.write();
        if fresh.user != current.user || fresh.tenant != current.tenant {
            return Err(ErrorBody::new(
                ErrorCode::AuthFailed,
                "a refreshed token must be for the same user and tenant",
            ));
        }
        *current = Arc::new(fresh);
        Ok(())
    }

    fn reply(&self, id: Option<u64>) {
        self.reply_with(id, streamgate_protocol::Payload::null());
    }

    fn reply_with(&self, id: Option<u64>, data: streamgate_protocol::Payload) {
        if let Some(id) = id {
            self.send(ServerFrame::Reply(Reply { id, data }));
        }
    }

    fn send(&self, frame: ServerFrame) {
        self.shared
            .push(Outbound::Frame(OutFrame::new(frame)), false);
    }

    /// Queues an error answer to request `id` (or a session-level error when `None`). The
    /// session stays open.
    pub fn send_error(&self, id: Option<u64>, error: ErrorBody) {
        self.hub.metrics().error(error.code);
        self.send(ServerFrame::error(id, error));
    }

    /// Closes the session for `code`: its queue ends and the transport sends a `disconnect`
    /// frame with [`SessionQueue::close_reason`].
    pub fn close(&self, code: ErrorCode, reason: impl Into<String>) {
        if self.shared.fail(Disconnect::new(code, reason)) {
            self.hub.metrics().error(code);
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.hub.disconnect(&self.shared);
    }
}

/// The outbound side of a session, drained by the transport's writer task.
pub struct SessionQueue {
    pub(crate) shared: Arc<SessionShared>,
}

impl fmt::Debug for SessionQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionQueue")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl SessionQueue {
    /// The next item, or `None` once the session is closing (see [`close_reason`]).
    ///
    /// [`close_reason`]: SessionQueue::close_reason
    pub async fn recv(&mut self) -> Option<Outbound> {
        // The queue is closed together with the token (`fail`): waiting on the queue alone
        // spares the token's mutex and waiter list on every wake-up of the writer.
        self.shared.queue.pop().await
    }

    /// The next item if one is ready, for coalescing several frames into one flush.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        if self.shared.is_closing() {
            return None;
        }
        self.shared.queue.try_pop()
    }

    /// Why the hub closed the session, if it did (`SLOW_CONSUMER`, `SHUTTING_DOWN` …).
    #[must_use]
    pub fn close_reason(&self) -> Option<Disconnect> {
        self.shared.close_reason.get().cloned()
    }

    /// Resolves when the session starts closing.
    pub fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.shared.closed.cancelled()
    }

    /// The session's wire format.
    #[must_use]
    pub fn format(&self) -> WireFormat {
        self.shared.format
    }

    /// Items waiting in the queue.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.queue.len() == 0
    }
}
