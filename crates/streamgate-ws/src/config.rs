use std::time::Duration;

use streamgate_protocol::DEFAULT_MAX_FRAME_SIZE;

/// Settings of the WebSocket transport.
///
/// ```
/// use std::time::Duration;
/// use streamgate_ws::WsConfig;
///
/// let config = WsConfig::default()
///     .path("/ws")
///     .allowed_origins(["https://app.example.com"])
///     .ping_interval(Duration::from_secs(20));
/// assert!(config.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// Route of the WebSocket endpoint.
    pub path: String,
    /// Allowed `Origin` header values; `None` allows any. Requests without an `Origin` header
    /// (non-browser clients) are always allowed: origin checks defend browsers against
    /// cross-site WebSocket hijacking, and only browsers send the header.
    pub allowed_origins: Option<Vec<String>>,
    /// Largest inbound message; larger ones close the connection with 1009.
    pub max_frame_size: usize,
    /// How long a connection without handshake credentials may take to send its `auth` frame.
    pub auth_timeout: Duration,
    /// Interval of server pings.
    pub ping_interval: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Most queued frames written per flush.
    pub max_batch: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            path: "/ws".into(),
            allowed_origins: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            auth_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_batch: 64,
        }
    }
}

/// An invalid [`WsConfig`] field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid websocket configuration: {0}")]
pub struct WsConfigError(String);

impl WsConfig {
    /// Sets the route.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Restricts browser origins.
    #[must_use]
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the largest inbound message.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets the `auth` frame deadline.
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Sets the ping interval.
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets the idle timeout.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Checks every field; the error names the field.
    pub fn check(&self) -> Result<(), WsConfigError> {
        let fail = |m: &str| Err(WsConfigError(m.into()));
        if !self.path.starts_with('/') {
            return fail("path: must start with '/'");
        }
        if !(16..=16 * 1024 * 1024).contains(&self.max_frame_size) {
            return fail("max_frame_size: must be between 16 bytes and 16 MiB");
        }
        if self.auth_timeout.is_zero()
            || self.ping_interval.is_zero()
            || self.idle_timeout.is_zero()
        {
            return fail("auth_timeout, ping_interval, idle_timeout: must be positive");
        }
        if self.idle_timeout <= self.ping_interval {
            return fail("idle_timeout: must be longer than ping_interval");
        }
        if self.max_batch == 0 {
            return fail("max_batch: must be at least 1");
        }
        Ok(())
    }
}
