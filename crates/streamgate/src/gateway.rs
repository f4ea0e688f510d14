use std::time::Duration;

use serde::Serialize;
use streamgate_core::{
    Authenticator, Authorizer, Backplane, CommandHandler, ConfigError, Delivery, HistoryStore, Hub,
    HubBuilder, HubConfig, PresenceStore, Publish, PublishError, PublishOutcome, RateLimiter,
    RoomPolicy, StreamHandle, Transport,
};
use streamgate_protocol::RoomId;

/// The gateway could not be built: the error names the setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Invalid hub settings (queues, room kinds, history).
    #[error(transparent)]
    Hub(#[from] ConfigError),
    /// Invalid WebSocket settings.
    #[cfg(feature = "ws")]
    #[error(transparent)]
    WebSocket(#[from] streamgate_ws::WsConfigError),
    /// Invalid Socket.IO settings.
    #[cfg(feature = "socketio")]
    #[error(transparent)]
    SocketIo(#[from] streamgate_socketio::SocketIoConfigError),
    /// Invalid Server-Sent Events settings.
    #[cfg(feature = "sse")]
    #[error(transparent)]
    Sse(#[from] streamgate_sse::SseConfigError),
}

/// A running gateway: the [`Hub`] plus the enabled transports. Cloning is cheap.
///
/// ```
/// use streamgate::{Gateway, StaticTokens, Principal};
///
/// let gateway = Gateway::builder()
///     .authenticator(StaticTokens::new().with_token("t", Principal::user("u1")))
///     .build()?;
/// let app: axum::Router = gateway.router();
/// # Ok::<(), streamgate::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Gateway {
    hub: Hub,
    transports: std::sync::Arc<Vec<Box<dyn Transport>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.transports.iter().map(|t| t.name()).collect();
        f.debug_struct("Gateway")
            .field("hub", &self.hub)
            .field("transports", &names)
            .finish()
    }
}

/// Configures a [`Gateway`]. Every setting has a working default except credentials: without
/// an authenticator, nobody can connect.
#[must_use]
pub struct GatewayBuilder {
    config: HubConfig,
    hub: HubBuilder,
    #[cfg(feature = "ws")]
    ws: Option<streamgate_ws::WsConfig>,
    #[cfg(feature = "sse")]
    sse: Option<streamgate_sse::SseConfig>,
    #[cfg(feature = "socketio")]
    socketio: Option<streamgate_socketio::SocketIoConfig>,
}

impl Gateway {
    /// Starts configuring a gateway.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            config: HubConfig::default(),
            hub: Hub::builder(HubConfig::default()),
            #[cfg(feature = "ws")]
            ws: Some(streamgate_ws::WsConfig::default()),
            #[cfg(feature = "sse")]
            sse: Some(streamgate_sse::SseConfig::default()),
            #[cfg(feature = "socketio")]
            socketio: Some(streamgate_socketio::SocketIoConfig::default()),
        }
    }

    /// One router with the routes of every enabled transport, to merge into your app.
    pub fn router(&self) -> axum::Router {
        self.transports
            .iter()
            .fold(axum::Router::new(), |router, t| {
                router.merge(t.router(self.hub.clone()))
            })
    }

    /// Opens a stream in `room`; see [`StreamHandle`].
    ///
    /// ```
    /// # let gateway = streamgate::Gateway::builder().build()?;
    /// let stream = gateway.stream("execution:42".parse()?);
    /// stream.token("Hi")?;
    /// stream.complete(())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn stream(&self, room: RoomId) -> StreamHandle {
        self.hub.stream(room)
    }

    /// Publishes `data` (serialized to JSON) as `event` into `room`.
    ///
    /// ```
    /// # let gateway = streamgate::Gateway::builder().build()?;
    /// let room = "conversation:7".parse()?;
    /// let outcome = gateway.publish(&room, "message.created", serde_json::json!({"text": "hi"}))?;
    /// assert_eq!(outcome.position.offset, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(
        &self,
        room: &RoomId,
        event: &str,
        data: impl Serialize,
    ) -> Result<PublishOutcome, PublishError> {
        self.hub.publish(room, Publish::json(event, &data)?)
    }

    /// Publishes with full control over options (priority, ack, volatile, targeting).
    pub fn publish_with(
        &self,
        room: &RoomId,
        publish: Publish,
    ) -> Result<PublishOutcome, PublishError> {
        self.hub.publish(room, publish)
    }

    /// Publishes with `ack` and follows the acknowledgements: recipients that do not `ack` in
    /// time get the publication again (see [`GatewayBuilder::acks`]); the [`Delivery`] gives
    /// the final [`DeliveryReport`](streamgate_core::DeliveryReport).
    ///
    /// ```
    /// use streamgate::Publish;
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let gateway = streamgate::Gateway::builder().build()?;
    /// let room = "conversation:7".parse()?;
    /// let delivery = gateway.publish_with_report(&room, Publish::json("invoice.ready", &42)?)?;
    /// // Nobody is in the room: nothing to wait for.
    /// let report = delivery.report().await;
    /// assert!(report.delivered.is_empty() && report.failed.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_with_report(
        &self,
        room: &RoomId,
        publish: Publish,
    ) -> Result<Delivery, PublishError> {
        self.hub.publish_with_report(room, publish)
    }

    /// The hub, for metrics, stats and advanced use.
    #[must_use]
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Tells every client to reconnect elsewhere (`SHUTTING_DOWN`, recoverable) and refuses new
    /// publications.
    pub fn shutdown(&self) {
        self.hub.shutdown();
    }
}

impl GatewayBuilder {
    /// Sets how connections are authenticated.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.hub = self.hub.authenticator(authenticator);
        self
    }

    /// Sets the authorization policy.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.hub = self.hub.authorizer(authorizer);
        self
    }

    /// Registers the handler of the application command `name`, on every transport: after
    /// the rate limit and the authorizer (`Action::Command`), the handler's data is the
    /// `reply`, its [`CommandError`](crate::CommandError) a typed `error`. Write handlers with
    /// [`typed`](crate::typed) (typed, validated data; your crate needs `validator`) or
    /// implement [`CommandHandler`]. The built-in `stream.cancel` (Stop) is registered
    /// already. Handlers run on the session's task, in order with its frames: never block.
    ///
    /// ```
    /// use streamgate::{BoxFuture, CommandContext, CommandError, CommandHandler, Gateway, Payload};
    ///
    /// struct Whoami;
    /// impl CommandHandler for Whoami {
    ///     fn call(&self, ctx: CommandContext, _: Payload) -> BoxFuture<'_, Result<Payload, CommandError>> {
    ///         let user = ctx.principal().user.clone();
    ///         Box::pin(async move { Payload::json(&user).map_err(|e| CommandError::Internal(e.to_string())) })
    ///     }
    /// }
    ///
    /// let gateway = Gateway::builder().command("whoami", Whoami).build()?;
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn command(mut self, name: impl Into<String>, handler: impl CommandHandler) -> Self {
        self.hub = self.hub.command(name, handler);
        self
    }

    /// Sets the rate limiter that every inbound command passes, on every transport, before it
    /// is authorized (default: unlimited). With the `ratelimit` feature, `KeyedRateLimiter`
    /// gives per-user quotas per command kind; keep a clone for its HTTP layer.
    ///
    /// ```
    /// # #[cfg(feature = "ratelimit")] {
    /// use streamgate::{Gateway, KeyedRateLimiter, RateLimitConfig};
    ///
    /// let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
    /// let gateway = Gateway::builder().rate_limiter(limiter.clone()).build()?;
    /// let api: axum::Router = axum::Router::new()
    ///     .route("/api/ping", axum::routing::get(|| async { "pong" }))
    ///     .route_layer(limiter.http_layer());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.hub = self.hub.rate_limiter(limiter);
        self
    }

    /// Sets the history store.
    pub fn history(mut self, history: impl HistoryStore) -> Self {
        self.hub = self.hub.history(history);
        self
    }

    /// Sets the presence store.
    pub fn presence(mut self, presence: impl PresenceStore) -> Self {
        self.hub = self.hub.presence(presence);
        self
    }

    /// Sets how long a room's presence changes are batched into one `presence` frame
    /// (default 50 ms; see [`HubConfig::presence_batch_window`](crate::HubConfig::presence_batch_window)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate::Gateway;
    ///
    /// let gateway = Gateway::builder()
    ///     .presence_batch_window(Duration::from_millis(100))
    ///     .presence_away_after(Duration::from_secs(120))
    ///     .typing_timeout(Duration::from_secs(3))
    ///     .build()?;
    /// assert_eq!(gateway.hub().config().typing_timeout, Duration::from_secs(3));
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn presence_batch_window(mut self, window: Duration) -> Self {
        self.config = self.config.presence_batch_window(window);
        self
    }

    /// Sets after how long without activity in all of their sessions a user shows as `away`
    /// (default 60 s).
    pub fn presence_away_after(mut self, inactive: Duration) -> Self {
        self.config = self.config.presence_away_after(inactive);
        self
    }

    /// Sets how long typing lasts without a renewal before the server sends `typing.stop`
    /// itself (default 5 s).
    pub fn typing_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.typing_timeout(timeout);
        self
    }

    /// Sets how long a presence entry lives in the store without a refresh (default 5 min;
    /// longer than the sweep interval).
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.config = self.config.presence_ttl(ttl);
        self
    }

    /// Sets the backplane.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.hub = self.hub.backplane(backplane);
        self
    }

    /// Sets the policy of a room kind (history size and retention, presence).
    pub fn room_kind(mut self, kind: impl Into<String>, policy: RoomPolicy) -> Self {
        self.config = self.config.room_kind(kind, policy);
        self
    }

    /// Sets the policy of room kinds without their own.
    pub fn default_room_policy(mut self, policy: RoomPolicy) -> Self {
        self.config.default_policy = policy;
        self
    }

    /// Limits how many sessions may be open at once, over all transports together (default:
    /// unlimited; see [`HubConfig::max_connections`]). At the limit, new connections are
    /// refused before authentication with `SERVER_OVERLOADED` (`retry_after_ms: 1000`): HTTP
    /// 503 with `Retry-After` on the WebSocket upgrade and the SSE request, a `connect_error`
    /// on Socket.IO. Open sessions keep working. `0` fails [`build`](Self::build).
    ///
    /// ```
    /// let gateway = streamgate::Gateway::builder().max_connections(10_000).build()?;
    /// assert_eq!(gateway.hub().config().max_connections, Some(10_000));
    /// assert!(streamgate::Gateway::builder().max_connections(0).build().is_err());
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn max_connections(mut self, sessions: usize) -> Self {
        self.config = self.config.max_connections(sessions);
        self
    }

    /// Sets each session's outbound queue capacity (frames).
    pub fn queue_capacity(mut self, frames: usize) -> Self {
        self.config = self.config.queue_capacity(frames);
        self
    }

    /// Sets how long before credentials expire sessions get `token.expiring`, and how often
    /// expiry is checked (defaults: 60 s and 1 s).
    pub fn token_expiry(mut self, warning: Duration, check_every: Duration) -> Self {
        self.config = self.config.token_expiry(warning, check_every);
        self
    }

    /// Sets how long a recipient has to acknowledge an `ack` publication before it gets it
    /// again, and how many deliveries (the first included) it gets before it is reported
    /// failed (defaults: 5 s and 3).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let gateway = streamgate::Gateway::builder().acks(Duration::from_secs(2), 5).build()?;
    /// assert_eq!(gateway.hub().config().ack_attempts, 5);
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn acks(mut self, timeout: Duration, attempts: u32) -> Self {
        self.config = self.config.acks(timeout, attempts);
        self
    }

    /// Sets each user's offline queue: publications targeted at a user with no session in
    /// the room wait there (at most `size`, each for `ttl`) until the user joins it (defaults:
    /// 100 and one hour; `size` 0 turns offline delivery off).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let gateway = streamgate::Gateway::builder()
    ///     .offline_queue(20, Duration::from_secs(600))
    ///     .build()?;
    /// assert_eq!(gateway.hub().config().offline_queue_size, 20);
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn offline_queue(mut self, size: usize, ttl: Duration) -> Self {
        self.config = self.config.offline_queue(size, ttl);
        self
    }

    /// Changes any other [`HubConfig`] setting.
    ///
    /// ```
    /// let gateway = streamgate::Gateway::builder()
    ///     .configure(|config| config.queue_capacity(256))
    ///     .build()?;
    /// assert_eq!(gateway.hub().config().queue_capacity, 256);
    /// # Ok::<(), streamgate::BuildError>(())
    /// ```
    pub fn configure(mut self, change: impl FnOnce(HubConfig) -> HubConfig) -> Self {
        self.config = change(self.config);
        self
    }

    /// Sets how often expired history is swept.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.config.sweep_interval = every;
        self
    }

    /// Configures the WebSocket transport.
    #[cfg(feature = "ws")]
    pub fn websocket(mut self, config: streamgate_ws::WsConfig) -> Self {
        self.ws = Some(config);
        self
    }

    /// Turns the WebSocket transport off.
    #[cfg(feature = "ws")]
    pub fn without_websocket(mut self) -> Self {
        self.ws = None;
        self
    }

    /// Configures the Server-Sent Events transport.
    #[cfg(feature = "sse")]
    pub fn sse(mut self, config: streamgate_sse::SseConfig) -> Self {
        self.sse = Some(config);
        self
    }

    /// Turns the Server-Sent Events transport off.
    #[cfg(feature = "sse")]
    pub fn without_sse(mut self) -> Self {
        self.sse = None;
        self
    }

    /// Configures the Socket.IO transport.
    #[cfg(feature = "socketio")]
    pub fn socketio(mut self, config: streamgate_socketio::SocketIoConfig) -> Self {
        self.socketio = Some(config);
        self
    }

    /// Turns the Socket.IO transport off.
    #[cfg(feature = "socketio")]
    pub fn without_socketio(mut self) -> Self {
        self.socketio = None;
        self
    }

    /// Validates every setting and builds the gateway.
    pub fn build(self) -> Result<Gateway, BuildError> {
        let hub = self.hub.config(self.config).build()?;
        #[allow(unused_mut)] // Only pushed to when a transport feature is on.
        let mut transports: Vec<Box<dyn Transport>> = Vec::new();
        #[cfg(feature = "ws")]
        if let Some(ws) = self.ws {
            transports.push(Box::new(streamgate_ws::WebSocketTransport::new(ws)?));
        }
        #[cfg(feature = "socketio")]
        if let Some(sio) = self.socketio {
            transports.push(Box::new(streamgate_socketio::SocketIoTransport::new(sio)?));
        }
        #[cfg(feature = "sse")]
        if let Some(sse) = self.sse {
            transports.push(Box::new(streamgate_sse::SseTransport::new(sse)?));
        }
        Ok(Gateway {
            hub,
            transports: std::sync::Arc::new(transports),
        })
    }
}
