use std::time::Duration;

use streamgate_protocol::DEFAULT_MAX_FRAME_SIZE;

/// Settings of the Socket.IO transport.
///
/// ```
/// use std::time::Duration;
/// use streamgate_socketio::SocketIoConfig;
///
/// let config = SocketIoConfig::default()
///     .namespace("/live")
///     .ping_interval(Duration::from_secs(20))
///     .ping_timeout(Duration::from_secs(10))
///     .max_payload(32 * 1024)
///     .allowed_origins(["https://app.example.com"]);
/// assert!(config.check().is_ok());
/// assert!(SocketIoConfig::default().namespace("live").check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIoConfig {
    /// Engine.IO request path (the client's `path` option), `/socket.io` by default.
    pub path: String,
    /// The Socket.IO namespace clients connect to, `/streaming` by default.
    pub namespace: String,
    /// Interval of Engine.IO pings; also announced in `gateway.connected` as
    /// `ping_interval_ms`.
    pub ping_interval: Duration,
    /// How long the server waits for the client's pong before dropping the connection.
    pub ping_timeout: Duration,
    /// Largest inbound message (a WebSocket message, or the body of one long-polling request),
    /// 64 KiB by default. Larger messages close the connection.
    pub max_payload: usize,
    /// Packets Engine.IO may hold per connection before the socket is written (1024 by
    /// default). When it is full the transport waits for room, up to
    /// `ping_interval + ping_timeout`, then drops the client as a slow consumer.
    pub buffer_size: usize,
    /// How long a connection may take to join the namespace (handshake, authentication)
    /// before it is closed, 10 s by default.
    pub connect_timeout: Duration,
    /// Commands of one socket that may wait to be handled; beyond that a command is answered
    /// with `RATE_LIMITED`. 64 by default.
    pub max_pending_commands: usize,
    /// Allowed `Origin` header values; `None` allows any. Requests without an `Origin` header
    /// (non-browser clients) are always allowed. This only refuses foreign origins (403); the
    /// CORS response headers that cross-origin long-polling needs come from the application's
    /// `tower_http::cors::CorsLayer`, which must wrap this transport's router too.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            path: "/socket.io".into(),
            namespace: "/streaming".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: DEFAULT_MAX_FRAME_SIZE,
            buffer_size: 1024,
            connect_timeout: Duration::from_secs(10),
            max_pending_commands: 64,
            allowed_origins: None,
        }
    }
}

/// An invalid [`SocketIoConfig`] field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket.io configuration: {0}")]
pub struct SocketIoConfigError(String);

impl SocketIoConfig {
    /// Sets the Engine.IO request path.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the ping interval.
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets the ping timeout.
    #[must_use]
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Sets the largest inbound message.
    #[must_use]
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets the per-connection Engine.IO packet buffer.
    #[must_use]
    pub fn buffer_size(mut self, packets: usize) -> Self {
        self.buffer_size = packets;
        self
    }

    /// Sets the namespace join deadline.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how many commands of one socket may wait to be handled.
    #[must_use]
    pub fn max_pending_commands(mut self, commands: usize) -> Self {
        self.max_pending_commands = commands;
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

    /// Checks every field; the error names the field.
    pub fn check(&self) -> Result<(), SocketIoConfigError> {
        let fail = |m: &str| Err(SocketIoConfigError(m.into()));
        if !self.path.starts_with('/') || self.path.len() < 2 {
            return fail("path: must start with '/' and name something");
        }
        if !self.namespace.starts_with('/') {
            return fail("namespace: must start with '/'");
        }
        if self.ping_interval.is_zero()
            || self.ping_timeout.is_zero()
            || self.connect_timeout.is_zero()
        {
            return fail("ping_interval, ping_timeout, connect_timeout: must be positive");
        }
        if !(256..=16 * 1024 * 1024).contains(&self.max_payload) {
            return fail("max_payload: must be between 256 bytes and 16 MiB");
        }
        if self.buffer_size < 16 {
            return fail("buffer_size: must be at least 16 packets");
        }
        if self.max_pending_commands == 0 {
            return fail("max_pending_commands: must be at least 1");
        }
        Ok(())
    }

    /// How long the writer waits for room in a full Engine.IO buffer before giving up.
    pub(crate) fn stall_limit(&self) -> Duration {
        self.ping_interval + self.ping_timeout
    }

    pub(crate) fn ping_interval_ms(&self) -> u64 {
        u64::try_from(self.ping_interval.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(SocketIoConfig::default().check(), Ok(()));
        let cases = [
            (SocketIoConfig::default().path("socket.io"), "path"),
            (
                SocketIoConfig::default().namespace("streaming"),
                "namespace",
            ),
            (
                SocketIoConfig::default().ping_timeout(Duration::ZERO),
                "ping_timeout",
            ),
            (SocketIoConfig::default().max_payload(10), "max_payload"),
            (SocketIoConfig::default().buffer_size(1), "buffer_size"),
            (
                SocketIoConfig::default().max_pending_commands(0),
                "max_pending_commands",
            ),
        ];
        for (config, field) in cases {
            let error = config.check().err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(field)),
                "{field}: {error:?}"
            );
        }
    }
}
