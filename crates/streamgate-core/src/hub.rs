mod presence;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use streamgate_protocol::{
    Connected, ErrorBody, ErrorCode, Join, Joined, Left, PROTOCOL_VERSION, Payload, Position,
    Priority, Publication, RoomId, ServerFrame, TokenExpiring, UserCommand, WireFormat,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Action, AuthError, Authenticator, Authorizer, Backplane, CommandContext, CommandHandler,
    ConfigError, Credentials, HistoryStore, HubConfig, LocalBackplane, MemoryHistory,
    MemoryPresence, Metrics, OpenPolicy, OutFrame, Outbound, PresenceStore, Principal,
    PublishError, RateLimiter, Recovery, RoomPolicy, SessionHandle, SessionId, SessionOptions,
    SessionQueue, StaticTokens, StreamHandle, Unlimited,
    ack::{AckKey, AckTracker, Delivery},
    command::{STREAM_CANCEL, StreamCancel},
    offline::{Enqueued, OfflineQueues},
    session::{Push, SessionShared},
    throttle::AuthThrottle,
};

/// Restricts a publication to some members of its room. Targeted publications are live-only:
/// they get no offset and are not kept in history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Deliver to these users' sessions.
    pub users: Vec<String>,
    /// Deliver to these sessions.
    pub sessions: Vec<SessionId>,
}

impl Target {
    /// Whether `session` is targeted; records which targeted user it belongs to in `reached`.
    fn matches(&self, session: &SessionShared, reached: &mut [bool]) -> bool {
        if self.users.is_empty() {
            return self.sessions.contains(&session.id);
        }
        let principal = session.principal.read();
        let user = principal
            .user
            .as_ref()
            .and_then(|u| self.users.iter().position(|t| t == u));
        if let Some(i) = user {
            reached[i] = true;
        }
        user.is_some() || self.sessions.contains(&session.id)
    }
}

/// A publication to make: event name, data and delivery options.
///
/// ```
/// use streamgate_core::{Publish, Target};
/// use streamgate_protocol::Priority;
///
/// let p = Publish::json("message.created", &serde_json::json!({"text": "hi"}))?
///     .priority(Priority::High)
///     .to(Target { users: vec!["u1".into()], sessions: vec![] });
/// # Ok::<(), streamgate_core::PublishError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Publish {
    event: String,
    data: Payload,
    id: Option<String>,
    priority: Priority,
    ack: bool,
    volatile: bool,
    target: Option<Target>,
}

impl Publish {
    /// A publication of `event` with `data`.
    pub fn new(event: impl Into<String>, data: Payload) -> Self {
        Self {
            event: event.into(),
            data,
            id: None,
            priority: Priority::Normal,
            ack: false,
            volatile: false,
            target: None,
        }
    }

    /// A publication whose data is `data` serialized to JSON.
    pub fn json(
        event: impl Into<String>,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Self, PublishError> {
        Ok(Self::new(event, Payload::json(data)?))
    }

    /// Sets the publication id (otherwise `{epoch:x}-{offset}` is generated).
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Asks recipients to acknowledge.
    #[must_use]
    pub fn ack(mut self) -> Self {
        self.ack = true;
        self
    }

    /// Marks the publication volatile (typing indicators …): live-only, and dropped for a
    /// session whose queue is full instead of disconnecting it.
    #[must_use]
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Restricts delivery to some users or sessions of the room (live-only).
    #[must_use]
    pub fn to(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The publication's position; offset 0 for live-only publications.
    pub position: Position,
    /// Sessions it was queued for.
    pub delivered: usize,
    /// Sessions for which it was dropped (volatile on a full queue).
    pub dropped: usize,
    /// Sessions closed with `SLOW_CONSUMER` by this publication.
    pub overflowed: usize,
    /// Targeted users without a session in the room for whom the publication waits in their
    /// offline queue.
    pub offline: usize,
}

/// Sizes of the hub's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HubStats {
    /// Open sessions.
    pub sessions: usize,
    /// Rooms known to the hub: those with members, plus memberless ones that were published
    /// to since the last sweep.
    pub rooms: usize,
    /// Rooms with a history log.
    pub logged_rooms: usize,
    /// Frames waiting in all session queues together; bounded by sessions × queue capacity.
    pub queued: usize,
    /// Users with an offline queue.
    pub offline_users: usize,
    /// Frames waiting in all offline queues together.
    pub offline_queued: usize,
}

struct Member {
    session: Arc<SessionShared>,
    filter: Option<Box<[String]>>,
}

impl Member {
    fn wants(&self, event: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.iter().any(|e| e == event))
    }
}

#[derive(Default)]
struct RoomState {
    members: HashMap<SessionId, Member>,
    /// Members per wire format, to encode each publication once per format in use.
    formats: [usize; 2],
    /// Set when the room is removed from the hub's map; holders of a stale `Arc` look again.
    dead: bool,
    /// Who is present, per user, and the diff waiting for the next flush.
    presence: presence::RoomPresence,
}

impl RoomState {
    /// Adds or replaces a membership; `true` when the session was not a member yet.
    fn insert(&mut self, member: Member) -> bool {
        let format = member.session.format;
        let new = self.members.insert(member.session.id, member).is_none();
        if new {
            self.formats[format.index()] += 1;
        }
        new
    }

    fn remove(&mut self, id: SessionId) -> bool {
        match self.members.remove(&id) {
            Some(m) => {
                self.formats[m.session.format.index()] -= 1;
                true
            }
            None => false,
        }
    }

    /// Queues a control frame (presence) to every member; dropped for full queues.
    fn broadcast_volatile(&self, frame: &Arc<OutFrame>) {
        for member in self.members.values() {
            member
                .session
                .push(Outbound::Frame(Arc::clone(frame)), true);
        }
    }
}

struct Room {
    policy: RoomPolicy,
    state: Mutex<RoomState>,
    /// Who is typing; locked before `state` when both are (see `hub::presence`).
    typing: Mutex<presence::Typists>,
}

struct StreamEntry {
    id: u64,
    cancel: CancellationToken,
}

pub(crate) struct HubInner {
    config: HubConfig,
    rooms: DashMap<RoomId, Arc<Room>>,
    sessions: DashMap<SessionId, Arc<SessionShared>>,
    streams: DashMap<RoomId, StreamEntry>,
    history: Arc<dyn HistoryStore>,
    presence: Arc<dyn PresenceStore>,
    backplane: Arc<dyn Backplane>,
    authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) rate_limiter: Arc<dyn RateLimiter>,
    commands: HashMap<String, Arc<dyn CommandHandler>>,
    tracking: presence::Tracking,
    offline: OfflineQueues,
    metrics: Metrics,
    auth_throttle: AuthThrottle,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

/// The bridge core: owns sessions and rooms, orders and logs publications, resumes clients, and
/// fans out into bounded per-session queues. Cloning is cheap (one `Arc`).
///
/// Publishing to one room takes only that room's lock, never a global one, and never waits on
/// a session: a full queue drops the session (or the volatile frame) instead.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Hub`]; every seam has an in-memory default, and the default authenticator admits
/// nobody until tokens are configured.
///
/// ```
/// use streamgate_core::{Hub, HubConfig, Principal, StaticTokens};
///
/// let hub = Hub::builder(HubConfig::default())
///     .authenticator(StaticTokens::new().with_token("dev", Principal::user("u1")))
///     .build()?;
/// assert_eq!(hub.stats().sessions, 0);
/// # Ok::<(), streamgate_core::ConfigError>(())
/// ```
#[must_use]
pub struct HubBuilder {
    config: HubConfig,
    history: Arc<dyn HistoryStore>,
    presence: Arc<dyn PresenceStore>,
    backplane: Arc<dyn Backplane>,
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
    rate_limiter: Arc<dyn RateLimiter>,
    commands: HashMap<String, Arc<dyn CommandHandler>>,
}

impl HubBuilder {
    /// Registers the handler of the application command `name` (see [`CommandHandler`] and
    /// [`typed`](crate::typed)); a later registration of the same name replaces the earlier.
    /// The built-in `stream.cancel` (Stop) is registered from the start; registering that name
    /// replaces it. Commands without a handler answer `UNKNOWN_COMMAND`.
    ///
    /// Handlers run on the sending session's task, in order with its other frames: they must
    /// not block.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use streamgate_core::{Hub, HubConfig, typed};
    /// use validator::Validate;
    ///
    /// #[derive(Deserialize, Validate)]
    /// struct Echo {
    ///     #[validate(length(max = 100))]
    ///     text: String,
    /// }
    ///
    /// let hub = Hub::builder(HubConfig::default())
    ///     .command("echo", typed(|_ctx, echo: Echo| async move { Ok(echo.text) }))
    ///     .build()?;
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    pub fn command(mut self, name: impl Into<String>, handler: impl CommandHandler) -> Self {
        self.commands.insert(name.into(), Arc::new(handler));
        self
    }

    /// Sets the authenticator.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Arc::new(authenticator);
        self
    }

    /// Sets the authorizer (default [`OpenPolicy`]).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Arc::new(authorizer);
        self
    }

    /// Sets the rate limiter every inbound command passes before it is authorized (default
    /// [`Unlimited`]). Its [`RateLimiter::sweep`] runs with the hub's sweeper.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::{Hub, HubConfig, RateKey, RateLimiter};
    ///
    /// struct NoTyping;
    /// impl RateLimiter for NoTyping {
    ///     fn check(&self, key: &RateKey<'_>) -> Result<(), Duration> {
    ///         if key.kind == "typing" { Err(Duration::from_secs(1)) } else { Ok(()) }
    ///     }
    /// }
    ///
    /// let hub = Hub::builder(HubConfig::default()).rate_limiter(NoTyping).build()?;
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.rate_limiter = Arc::new(limiter);
        self
    }

    /// Sets the history store (default [`MemoryHistory`]).
    pub fn history(mut self, history: impl HistoryStore) -> Self {
        self.history = Arc::new(history);
        self
    }

    /// Sets the presence store (default [`MemoryPresence`]).
    pub fn presence(mut self, presence: impl PresenceStore) -> Self {
        self.presence = Arc::new(presence);
        self
    }

    /// Sets the backplane (default [`LocalBackplane`]).
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Arc::new(backplane);
        self
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the configuration and builds the hub. Inside a Tokio runtime this also starts
    /// the sweeper that trims expired history, the credential expiry check and the presence
    /// task ([`Hub::check_presence`] every batch window); they stop when the last clone of the
    /// hub drops. Without a runtime, call [`Hub::sweep`], [`Hub::check_expiry`] and
    /// [`Hub::check_presence`] yourself.
    pub fn build(self) -> Result<Hub, ConfigError> {
        self.config.check()?;
        let auth_throttle = AuthThrottle::new(
            self.config.auth_failure_threshold,
            self.config.auth_failure_window,
            self.config.auth_failure_max_delay,
        );
        let offline = OfflineQueues::new(
            self.config.offline_queue_size,
            self.config.offline_ttl,
            self.config.offline_max_users,
        );
        let hub = Hub {
            inner: Arc::new(HubInner {
                config: self.config,
                rooms: DashMap::new(),
                sessions: DashMap::new(),
                streams: DashMap::new(),
                history: self.history,
                presence: self.presence,
                backplane: self.backplane,
                authenticator: self.authenticator,
                authorizer: self.authorizer,
                rate_limiter: self.rate_limiter,
                commands: self.commands,
                tracking: presence::Tracking::new(),
                offline,
                metrics: Metrics::default(),
                auth_throttle,
                next_id: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = &hub.inner;
            let config = &inner.config;
            // The sweeper skips the immediate first tick: nothing is stale at start.
            runtime.spawn(every(inner, config.sweep_interval, true, Hub::sweep));
            runtime.spawn(every(
                inner,
                config.expiry_check_interval,
                false,
                Hub::check_expiry,
            ));
            runtime.spawn(every(
                inner,
                config.presence_batch_window,
                false,
                Hub::check_presence,
            ));
        }
        Ok(hub)
    }
}

/// Runs `task` on the hub every `period` until the hub is dropped or shut down (holding only a
/// `Weak`, so the task never keeps the hub alive); with `skip_first`, not at once.
fn every(
    hub: &Arc<HubInner>,
    period: std::time::Duration,
    skip_first: bool,
    task: fn(&Hub),
) -> impl std::future::Future<Output = ()> + use<> {
    let hub = Arc::downgrade(hub);
    async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if skip_first {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            if inner.shutdown.is_cancelled() {
                return;
            }
            task(&Hub { inner });
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn err(code: ErrorCode, message: &str) -> ErrorBody {
    ErrorBody::new(code, message)
}

impl Hub {
    /// Starts building a hub.
    pub fn builder(config: HubConfig) -> HubBuilder {
        HubBuilder {
            config,
            history: Arc::new(MemoryHistory::new()),
            presence: Arc::new(MemoryPresence::default()),
            backplane: Arc::new(LocalBackplane),
            authenticator: Arc::new(StaticTokens::new()),
            authorizer: Arc::new(OpenPolicy),
            rate_limiter: Arc::new(Unlimited),
            commands: HashMap::from([(
                STREAM_CANCEL.to_owned(),
                Arc::new(StreamCancel) as Arc<dyn CommandHandler>,
            )]),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Live counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The backplane (for readiness checks).
    #[must_use]
    pub fn backplane(&self) -> &dyn Backplane {
        &*self.inner.backplane
    }

    /// Sizes of the hub's state.
    #[must_use]
    pub fn stats(&self) -> HubStats {
        HubStats {
            sessions: self.inner.sessions.len(),
            rooms: self.inner.rooms.len(),
            logged_rooms: self.inner.history.rooms(),
            queued: self.inner.sessions.iter().map(|s| s.queued()).sum(),
            offline_users: self.inner.offline.users(),
            offline_queued: self.inner.offline.len(),
        }
    }

    /// Frames waiting in a session's queue, if the session exists.
    #[must_use]
    pub fn queued(&self, session: SessionId) -> Option<usize> {
        self.inner.sessions.get(&session).map(|s| s.queued())
    }

    /// Verifies credentials with the configured [`Authenticator`].
    ///
    /// Repeated failures from one address are slowed down: past
    /// [`HubConfig::auth_failure_threshold`] failures, each further attempt from that address
    /// waits 100 ms, doubling per failure up to [`HubConfig::auth_failure_max_delay`]. Only the
    /// connection that tries waits; a success clears the address.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        let ip = credentials.remote_addr.map(|a| a.ip());
        let throttle = &self.inner.auth_throttle;
        if let Some(ip) = ip {
            let delay = throttle.delay(ip);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let result = self.inner.authenticator.authenticate(credentials).await;
        match (&result, ip) {
            (Err(_), Some(ip)) => throttle.failed(ip),
            (Ok(_), Some(ip)) => throttle.succeeded(ip),
            _ => {}
        }
        result
    }

    /// Admits a new connection from `address` (when the transport knows it); every transport
    /// calls it before authenticating. Two checks, in this order:
    ///
    /// 1. the connection limit ([`HubConfig::max_connections`]), whatever the address: while
    ///    that many sessions are open, the refusal is `SERVER_OVERLOADED` with
    ///    `retry_after_ms: Some(1000)` (the transports answer HTTP 503 with `Retry-After`);
    /// 2. the rate limiter's per-address connection quota
    ///    ([`RateLimiter::check_connect`]), only when the address is known: `RATE_LIMITED`
    ///    with `retry_after_ms` (HTTP 429).
    ///
    /// Each refusal is counted in the error metrics here; transports do not count it again.
    /// The limit counts open sessions, it does not reserve one: connections admitted at the
    /// same moment, or still authenticating, may together take the count a little past it.
    ///
    /// ```
    /// use std::{net::IpAddr, time::Duration};
    /// use streamgate_core::{Hub, HubConfig, RateKey, RateLimiter};
    /// use streamgate_protocol::ErrorCode;
    ///
    /// struct OnePerAddress(std::sync::Mutex<Vec<IpAddr>>);
    /// impl RateLimiter for OnePerAddress {
    ///     fn check(&self, _: &RateKey<'_>) -> Result<(), Duration> { Ok(()) }
    ///     fn check_connect(&self, address: IpAddr) -> Result<(), Duration> {
    ///         let mut seen = self.0.lock().expect("lock");
    ///         if seen.contains(&address) { return Err(Duration::from_secs(1)) }
    ///         seen.push(address);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let hub = Hub::builder(HubConfig::default())
    ///     .rate_limiter(OnePerAddress(Default::default()))
    ///     .build()?;
    /// let address = Some("127.0.0.1:50000".parse()?);
    /// assert!(hub.admit(address).is_ok());
    /// let refused = hub.admit(address).expect_err("second connection");
    /// assert_eq!((refused.code, refused.retry_after_ms), (ErrorCode::RateLimited, Some(1000)));
    /// assert!(hub.admit(None).is_ok()); // unknown address: nothing to key on
    ///
    /// // At the connection limit, every attempt is refused until a session closes.
    /// let hub = Hub::builder(HubConfig::default().max_connections(1)).build()?;
    /// let (session, _queue) = hub.connect(streamgate_core::Principal::user("u1"), "example", streamgate_core::WireFormat::Json);
    /// let refused = hub.admit(None).expect_err("at the limit");
    /// assert_eq!((refused.code, refused.retry_after_ms), (ErrorCode::ServerOverloaded, Some(1000)));
    /// drop(session);
    /// assert!(hub.admit(None).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn admit(&self, address: Option<std::net::SocketAddr>) -> Result<(), ErrorBody> {
        if let Some(max) = self.inner.config.max_connections
            && self.inner.sessions.len() >= max
        {
            self.inner.metrics.error(ErrorCode::ServerOverloaded);
            return Err(ErrorBody::new(
                ErrorCode::ServerOverloaded,
                "the server is at its connection limit; retry later or elsewhere",
            )
            .with_retry_after_ms(1000));
        }
        let Some(address) = address else {
            return Ok(());
        };
        self.inner
            .rate_limiter
            .check_connect(address.ip())
            .map_err(|wait| {
                self.inner.metrics.error(ErrorCode::RateLimited);
                crate::ratelimit::rate_limited(wait, "too many connections from this address")
            })
    }

    /// Addresses currently remembered for failed authentications.
    #[must_use]
    pub fn throttled_addresses(&self) -> usize {
        self.inner.auth_throttle.tracked()
    }

    /// Registers an authenticated session and queues its `connected` frame. The transport
    /// drives the returned handle (inbound) and queue (outbound).
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Principal, WireFormat};
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let (session, queue) = hub.connect(Principal::user("u1"), "example", WireFormat::Json);
    /// assert_eq!(queue.len(), 1); // the `connected` frame
    /// assert_eq!(hub.stats().sessions, 1);
    /// drop(session);
    /// assert_eq!(hub.stats().sessions, 0);
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    pub fn connect(
        &self,
        principal: Principal,
        transport: &'static str,
        format: WireFormat,
    ) -> (SessionHandle, SessionQueue) {
        self.open(principal, SessionOptions::new(transport, format))
    }

    /// Like [`Hub::connect`], with everything a transport knows about the connection.
    pub fn open(
        &self,
        principal: Principal,
        options: SessionOptions,
    ) -> (SessionHandle, SessionQueue) {
        let id = SessionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let user = principal.user.clone();
        let ping_interval_ms = options.ping_interval_ms;
        let transport = options.transport;
        let shared = SessionShared::new(id, options, principal, self.inner.config.queue_capacity);
        self.inner.sessions.insert(id, Arc::clone(&shared));
        self.inner.metrics.connection_opened(transport);
        if self.inner.shutdown.is_cancelled() {
            shared.fail(streamgate_protocol::Disconnect::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        let connected = Connected {
            session: id.to_string(),
            user,
            version: PROTOCOL_VERSION,
            ping_interval_ms,
        };
        shared.push(
            Outbound::Frame(OutFrame::new(ServerFrame::Connected(connected))),
            false,
        );
        tracing::debug!(session.id = %id, transport, "session connected");
        (
            SessionHandle {
                hub: self.clone(),
                shared: Arc::clone(&shared),
            },
            SessionQueue { shared },
        )
    }

    /// Opens a stream in `room` (usually `execution:{id}`). See [`StreamHandle`].
    #[must_use]
    pub fn stream(&self, room: RoomId) -> StreamHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        self.inner.streams.insert(
            room.clone(),
            StreamEntry {
                id,
                cancel: cancel.clone(),
            },
        );
        self.inner.metrics.stream_started();
        StreamHandle::new(self.clone(), room, id, cancel)
    }

    /// Cancels the running stream in `room` (its [`StreamHandle::cancelled`] resolves);
    /// `false` when no stream runs there. A client's Stop (the built-in `stream.cancel`
    /// command) calls this; the producer then ends the stream with
    /// [`StreamHandle::end_cancelled`]. A disconnect never cancels a stream.
    pub fn cancel_stream(&self, room: &RoomId) -> bool {
        self.inner
            .streams
            .get(room)
            .map(|s| s.cancel.cancel())
            .is_some()
    }

    pub(crate) fn stream_ended(&self, room: &RoomId, id: u64) {
        self.inner.streams.remove_if(room, |_, s| s.id == id);
        self.inner.metrics.stream_ended();
    }

    /// Publishes into `room`: assigns the next offset (unless live-only), keeps it in history,
    /// encodes it once per wire format in use and queues it for every member whose filter
    /// accepts the event.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Publish};
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let room = "org:acme".parse()?;
    /// let first = hub.publish(&room, Publish::json("notice", &"hello")?)?;
    /// let second = hub.publish(&room, Publish::json("notice", &"again")?)?;
    /// assert_eq!(second.position.offset, first.position.offset + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(&self, room: &RoomId, publish: Publish) -> Result<PublishOutcome, PublishError> {
        self.publish_tracked(room, publish)
            .map(|(outcome, _)| outcome)
    }

    /// Publishes like [`Hub::publish`] with `ack` set, and follows the acknowledgements: each
    /// recipient session that does not `ack` within [`HubConfig::ack_timeout`] gets the
    /// publication again, up to [`HubConfig::ack_attempts`] deliveries, and is then reported
    /// failed. The returned [`Delivery`] gives the [`DeliveryReport`](crate::DeliveryReport)
    /// (delivered, pending, failed by session and user, and targeted users that were offline).
    /// Retries run on the Tokio runtime the call is made in.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::{Hub, HubConfig, Principal, Publish, WireFormat};
    /// use streamgate_protocol::{ClientFrame, Command, Join};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = Hub::builder(HubConfig::default().acks(Duration::from_millis(20), 3)).build()?;
    /// let room: streamgate_protocol::RoomId = "conversation:42".parse()?;
    /// let (bob, mut queue) = hub.connect(Principal::user("bob"), "example", WireFormat::Json);
    /// bob.handle(ClientFrame::new(Command::Join(Join::new(room.clone())))).await;
    ///
    /// // Bob never acknowledges: three deliveries, then he is reported failed.
    /// let delivery = hub.publish_with_report(&room, Publish::json("message.created", &"hi")?)?;
    /// let report = delivery.report().await;
    /// assert_eq!(report.failed.len(), 1);
    /// assert_eq!(report.failed[0].attempts, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_with_report(
        &self,
        room: &RoomId,
        publish: Publish,
    ) -> Result<Delivery, PublishError> {
        let (outcome, tracker) = self.publish_tracked(room, publish.ack())?;
        let tracker = tracker.ok_or_else(|| PublishError::Invalid("nothing to track".into()))?;
        Ok(Delivery { outcome, tracker })
    }

    fn publish_tracked(
        &self,
        room: &RoomId,
        publish: Publish,
    ) -> Result<(PublishOutcome, Option<Arc<AckTracker>>), PublishError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(PublishError::ShuttingDown);
        }
        if publish.event.is_empty() || publish.event.len() > 128 {
            return Err(PublishError::Invalid(
                "event name must be 1-128 bytes".into(),
            ));
        }
        let Publish {
            event,
            data,
            id,
            priority,
            ack,
            volatile,
            target,
        } = publish;
        let live = volatile || target.is_some();
        let publication = Publication {
            room: room.clone(),
            offset: 0,
            epoch: 0,
            id: id.unwrap_or_default(),
            event,
            data,
            ts: now_ms(),
            priority,
            ack,
        };
        let (frame, outcome, tracker) = self.with_room(room, |room_entry, state| {
            let frame = if live {
                let mut publication = publication;
                publication.epoch = self.inner.history.position(room).epoch;
                if publication.id.is_empty() {
                    publication.id =
                        format!("l{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed));
                }
                OutFrame::new(ServerFrame::Publication(publication))
            } else {
                self.inner.history.append(&room_entry.policy, publication)
            };
            // Volatile publications are best effort: never tracked, never queued offline.
            let tracker = (ack && !volatile)
                .then(|| {
                    frame
                        .publication()
                        .map(|p| AckTracker::new(Arc::clone(&frame), p))
                })
                .flatten();
            let mut reached = vec![false; target.as_ref().map_or(0, |t| t.users.len())];
            let mut outcome = fan_out(
                state,
                &frame,
                &FanOut {
                    volatile,
                    target: target.as_ref(),
                    tracker: tracker.as_ref(),
                },
                &mut reached,
            );
            // Still under the room lock: a join of a targeted user either saw this
            // publication live or finds it in the offline queue, never both or neither.
            if let Some(target) = target.as_ref().filter(|_| !volatile) {
                for (user, _) in target.users.iter().zip(&reached).filter(|(_, r)| !**r) {
                    match self.inner.offline.push(user, room, &frame) {
                        Enqueued::Queued | Enqueued::Displaced => {
                            outcome.offline += 1;
                            if let Some(tracker) = &tracker {
                                tracker.add_offline(user.clone());
                            }
                        }
                        Enqueued::Refused => outcome.dropped += 1,
                    }
                }
            }
            (frame, outcome, tracker)
        });
        let m = &self.inner.metrics;
        m.messages_out(outcome.delivered as u64, outcome.dropped as u64);
        for _ in 0..outcome.overflowed {
            m.error(ErrorCode::SlowConsumer);
        }
        self.inner.backplane.publish(&frame);
        if let Some(tracker) = &tracker {
            tracker.seal();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let config = &self.inner.config;
                runtime.spawn(crate::ack::drive(
                    Arc::clone(tracker),
                    config.ack_timeout,
                    config.ack_attempts,
                ));
            }
        }
        Ok((outcome, tracker))
    }

    /// Records an acknowledgement from `session` (the `ack` command, or a transport's own
    /// acknowledgement such as a Socket.IO callback); `false` when nothing of that session
    /// waited for it (already acknowledged, failed, or never sent with `ack`).
    pub fn acknowledge(&self, session: SessionId, ack: &streamgate_protocol::Ack) -> bool {
        let Some(shared) = self.inner.sessions.get(&session).map(|s| Arc::clone(&s)) else {
            return false;
        };
        let tracker = shared.acks.lock().remove(&AckKey::of_ack(ack));
        tracker.is_some_and(|t| t.acknowledged(session))
    }

    fn room(&self, id: &RoomId) -> Arc<Room> {
        if let Some(room) = self.inner.rooms.get(id) {
            return Arc::clone(&room);
        }
        let room = self.inner.rooms.entry(id.clone()).or_insert_with(|| {
            Arc::new(Room {
                policy: self.inner.config.policy_for(id.kind()).clone(),
                state: Mutex::default(),
                typing: Mutex::default(),
            })
        });
        Arc::clone(&room)
    }

    /// Runs `f` under the room's lock, creating the room if needed.
    fn with_room<R>(&self, id: &RoomId, f: impl FnOnce(&Room, &mut RoomState) -> R) -> R {
        loop {
            let room = self.room(id);
            let mut state = room.state.lock();
            if state.dead {
                continue;
            }
            return f(&room, &mut state);
        }
    }

    pub(crate) fn join(
        &self,
        session: &Arc<SessionShared>,
        id: Option<u64>,
        join: Join,
    ) -> Result<(), ErrorBody> {
        let principal = session.principal();
        self.inner
            .authorizer
            .authorize(&principal, Action::Join(&join.room))
            .map_err(|code| err(code, "you may not join this room"))?;
        let room = join.room;
        let filter = join.events.map(Vec::into_boxed_slice);
        self.with_room(&room, |entry, state| {
            if let Some(max) = entry.policy.max_members
                && state.members.len() >= max
                && !state.members.contains_key(&session.id)
            {
                return Err(err(ErrorCode::RoomFull, "the room is full"));
            }
            let history = &self.inner.history;
            let member = Member {
                session: Arc::clone(session),
                filter,
            };
            let mut recovery = match join.since {
                Some(since) => history.recover(&room, &entry.policy, since, join.epoch),
                None => crate::Recovery {
                    frames: Vec::new(),
                    recovered: false,
                    position: history.position(&room),
                },
            };
            // The event filter applies to missed publications as it does to live ones.
            recovery
                .frames
                .retain(|f| f.publication().is_some_and(|p| member.wants(&p.event)));
            let joined = Joined {
                id,
                room: room.clone(),
                epoch: recovery.position.epoch,
                offset: recovery.position.offset,
                recovered: recovery.recovered,
                missed: recovery.frames.len() as u64,
            };
            // Reply, missed publications and membership change under the room lock: nothing
            // published meanwhile can slip between them or arrive twice.
            session.push(
                Outbound::Frame(OutFrame::new(ServerFrame::Joined(joined))),
                false,
            );
            if !recovery.frames.is_empty() {
                session.push(Outbound::Batch(recovery.frames.into()), false);
            }
            // Publications targeted at this user while no session of theirs was here.
            if let Some(user) = &principal.user {
                for frame in self.inner.offline.take(user, &room) {
                    if frame.publication().is_some_and(|p| member.wants(&p.event)) {
                        session.push(Outbound::Frame(frame), false);
                    }
                }
            }
            // A repeated join replaces the filter but is not a second presence.
            let new_member = state.insert(member);
            if new_member
                && entry.policy.presence
                && let Some(user) = &principal.user
            {
                self.presence_joined(&room, state, user, session.id);
            }
            Ok(())
        })?;
        session.rooms.lock().insert(room);
        Ok(())
    }

    pub(crate) fn leave(
        &self,
        session: &Arc<SessionShared>,
        id: Option<u64>,
        room: &RoomId,
    ) -> Result<(), ErrorBody> {
        if !session.rooms.lock().remove(room) {
            return Err(err(ErrorCode::NotJoined, "not a member of this room"));
        }
        self.remove_member(session, room);
        session.push(
            Outbound::Frame(OutFrame::new(ServerFrame::Left(Left {
                id,
                room: room.clone(),
            }))),
            false,
        );
        Ok(())
    }

    fn remove_member(&self, session: &SessionShared, room_id: &RoomId) {
        let Some(room) = self.inner.rooms.get(room_id).map(|r| Arc::clone(&r)) else {
            return;
        };
        let mut state = room.state.lock();
        if !state.remove(session.id) {
            return;
        }
        let typist = self.presence_left(room_id, &room, &mut state, session);
        drop(state);
        // The user's last session here: their typing ends too.
        if let Some(typist) = typist {
            self.stop_typing(room_id, &room, &typist);
        }
    }

    pub(crate) fn require_member(
        &self,
        session: &SessionShared,
        room: &RoomId,
    ) -> Result<(), ErrorBody> {
        if session.rooms.lock().contains(room) {
            Ok(())
        } else {
            Err(err(ErrorCode::NotJoined, "join the room first"))
        }
    }

    /// Authorizes an application command, then runs its handler on the caller's (the
    /// session's) task; the `Ok` data is the `reply`.
    pub(crate) async fn user_command(
        &self,
        session: &Arc<SessionShared>,
        cmd: UserCommand,
    ) -> Result<Payload, ErrorBody> {
        let principal = session.principal();
        self.inner
            .authorizer
            .authorize(
                &principal,
                Action::Command {
                    name: &cmd.name,
                    room: cmd.room.as_ref(),
                },
            )
            .map_err(|code| err(code, "you may not send this command"))?;
        let Some(handler) = self.inner.commands.get(&cmd.name) else {
            return Err(ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!("no handler for command `{}`", cmd.name),
            ));
        };
        let ctx = CommandContext {
            hub: self.clone(),
            session: Arc::clone(session),
            principal,
            name: cmd.name,
            room: cmd.room,
        };
        let name = ctx.name.clone();
        handler
            .call(ctx, cmd.data)
            .await
            .map_err(|e| e.into_body(&name))
    }

    pub(crate) fn disconnect(&self, session: &Arc<SessionShared>) {
        session.fail(streamgate_protocol::Disconnect::new(
            ErrorCode::ShuttingDown,
            "session ended",
        ));
        if self.inner.sessions.remove(&session.id).is_none() {
            return;
        }
        let rooms: Vec<RoomId> = session.rooms.lock().drain().collect();
        for room in &rooms {
            self.remove_member(session, room);
        }
        let acks: Vec<_> = session.acks.lock().drain().map(|(_, t)| t).collect();
        for tracker in acks {
            tracker.session_closed(session.id);
        }
        self.inner.metrics.connection_closed(session.transport);
        tracing::debug!(session.id = %session.id, lived_ms = session.connected_at.elapsed().as_millis() as u64, "session disconnected");
    }

    /// Closes every session of `user` with `code` (for example `SLOW_CONSUMER`-like forced
    /// reconnects, or a revoked account with `AUTH_FAILED`); returns how many were closed.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Principal, WireFormat};
    /// use streamgate_protocol::ErrorCode;
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let (_session, queue) = hub.connect(Principal::user("u1"), "example", WireFormat::Json);
    /// assert_eq!(hub.disconnect_user("u1", ErrorCode::ShuttingDown, "maintenance"), 1);
    /// assert_eq!(queue.close_reason().map(|d| d.code), Some(ErrorCode::ShuttingDown));
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    pub fn disconnect_user(&self, user: &str, code: ErrorCode, reason: &str) -> usize {
        let mut closed = 0;
        for session in &self.inner.sessions {
            if session.principal().user.as_deref() == Some(user)
                && session.fail(streamgate_protocol::Disconnect::new(code, reason))
            {
                self.inner.metrics.error(code);
                closed += 1;
            }
        }
        closed
    }

    /// Warns sessions whose credentials expire within
    /// [`HubConfig::token_expiry_warning`] (one `token.expiring` frame per expiry; a `refresh`
    /// with a later expiry re-arms it) and closes those whose credentials have expired with
    /// `TOKEN_EXPIRED` (recoverable: the client reconnects with a fresh token and resumes).
    /// Runs every [`HubConfig::expiry_check_interval`] inside a Tokio runtime; callable
    /// directly.
    pub fn check_expiry(&self) {
        let now = now_ms();
        let warning =
            u64::try_from(self.inner.config.token_expiry_warning.as_millis()).unwrap_or(u64::MAX);
        for session in &self.inner.sessions {
            let Some(expires_at) = session.principal().expires_at else {
                continue;
            };
            let expires_ms = expires_at.saturating_mul(1000);
            if expires_ms <= now {
                let reason = "the token expired; reconnect with a fresh token and resume";
                if session.fail(streamgate_protocol::Disconnect::new(
                    ErrorCode::TokenExpired,
                    reason,
                )) {
                    self.inner.metrics.error(ErrorCode::TokenExpired);
                }
            } else if expires_ms - now <= warning
                && session.warned_for.swap(expires_at, Ordering::Relaxed) != expires_at
            {
                let frame = ServerFrame::TokenExpiring(TokenExpiring {
                    expires_at,
                    in_ms: expires_ms - now,
                });
                session.push(Outbound::Frame(OutFrame::new(frame)), false);
            }
        }
    }

    /// Trims expired history, forgets rooms without members, lets the rate limiter evict
    /// idle keys, and refreshes this node's presence entries before the [`PresenceStore`]
    /// drops those older than [`HubConfig::presence_ttl`]. Runs periodically on its own
    /// inside a Tokio runtime; callable directly.
    pub fn sweep(&self) {
        let inner = &self.inner;
        inner
            .history
            .sweep(&|room| inner.config.policy_for(room.kind()).clone());
        inner.auth_throttle.sweep();
        self.sweep_presence();
        inner.offline.sweep();
        inner.rate_limiter.sweep();
        inner.rooms.retain(|_, room| {
            let mut state = room.state.lock();
            if state.members.is_empty() {
                state.dead = true;
                false
            } else {
                true
            }
        });
    }

    /// Closes every session with `SHUTTING_DOWN` (recoverable: clients reconnect elsewhere and
    /// resume) and refuses further publications.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for session in &self.inner.sessions {
            if session.fail(streamgate_protocol::Disconnect::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )) {
                self.inner.metrics.error(ErrorCode::ShuttingDown);
            }
        }
    }

    /// Resolves when [`Hub::shutdown`] is called.
    pub async fn shutting_down(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// Whether [`Hub::shutdown`] was called.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig};
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// assert!(!hub.is_shutting_down());
    /// hub.shutdown();
    /// assert!(hub.is_shutting_down());
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The room's position: its epoch and latest offset (0 before the first logged
    /// publication). A room the history store has never seen gets its epoch now, as on a
    /// join.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Publish};
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let room = "execution:7".parse()?;
    /// assert_eq!(hub.position(&room).offset, 0);
    /// hub.publish(&room, Publish::json("e", &1)?)?;
    /// assert_eq!(hub.position(&room).offset, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn position(&self, room: &RoomId) -> Position {
        self.inner.history.position(room)
    }

    /// The logged publications of `room` after offset `since` (in `epoch`, when given), read
    /// from the history store with the room kind's [`RoomPolicy`]: what a client joining
    /// with `since` and `epoch` would be replayed, without a session (and without an event
    /// filter). The rules are those of a resume: `recovered` is `false`, with no frames, when
    /// `epoch` is given and is not the room's, when `since` is beyond the room's latest
    /// offset, or when the history no longer reaches back to `since + 1`; `since` equal to the
    /// latest offset recovers with nothing. `position` is the room's epoch and latest offset
    /// either way. A room the store has never seen gets its epoch now, as on a join (an empty
    /// log, forgotten by the sweep once idle for the kind's history TTL).
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Publish};
    ///
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let room = "execution:8".parse()?;
    /// for n in 1..=3 {
    ///     hub.publish(&room, Publish::json("e", &n)?)?;
    /// }
    /// let history = hub.history(&room, 1, None);
    /// assert!(history.recovered);
    /// let offsets: Vec<u64> = history.frames.iter().filter_map(|f| f.publication()).map(|p| p.offset).collect();
    /// assert_eq!(offsets, [2, 3]);
    /// assert!(!hub.history(&room, 1, Some(history.position.epoch + 1)).recovered);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn history(&self, room: &RoomId, since: u64, epoch: Option<u64>) -> Recovery {
        let policy = self.inner.config.policy_for(room.kind());
        self.inner.history.recover(room, policy, since, epoch)
    }
}

/// How one publication fans out.
struct FanOut<'a> {
    volatile: bool,
    target: Option<&'a Target>,
    tracker: Option<&'a Arc<AckTracker>>,
}

/// The hot loop: one `Arc` clone and one non-blocking enqueue per recipient.
fn fan_out(
    state: &RoomState,
    frame: &Arc<OutFrame>,
    how: &FanOut<'_>,
    reached: &mut [bool],
) -> PublishOutcome {
    let mut outcome = PublishOutcome {
        position: Position::default(),
        delivered: 0,
        dropped: 0,
        overflowed: 0,
        offline: 0,
    };
    let Some(publication) = frame.publication() else {
        return outcome;
    };
    outcome.position = publication.position();
    for format in WireFormat::ALL {
        if state.formats[format.index()] > 0
            && let Err(e) = frame.encode(format)
        {
            tracing::error!(error = %e, ?format, "cannot encode publication");
        }
    }
    for member in state.members.values() {
        // Target first: a targeted user who is here but filters the event out was reached.
        if how
            .target
            .is_some_and(|t| !t.matches(&member.session, reached))
            || !member.wants(&publication.event)
        {
            continue;
        }
        if let Some(tracker) = how.tracker {
            tracker.register(&member.session);
        }
        let push = member
            .session
            .push(Outbound::Frame(Arc::clone(frame)), how.volatile);
        match push {
            Push::Queued => outcome.delivered += 1,
            Push::Dropped => outcome.dropped += 1,
            Push::Overflowed => outcome.overflowed += 1,
            Push::Closed => {}
        }
        if push != Push::Queued
            && let Some(tracker) = how.tracker
        {
            tracker.refused(&member.session);
        }
    }
    outcome
}
