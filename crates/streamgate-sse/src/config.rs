use std::time::Duration;

use streamgate_protocol::DEFAULT_MAX_FRAME_SIZE;

use crate::cursor::MAX_CURSOR_ROOMS;

/// Settings of the SSE transport, checked once by [`SseTransport::new`](crate::SseTransport::new)
/// (or [`SseConfig::check`]).
///
/// ```
/// use std::time::Duration;
/// use streamgate_sse::SseConfig;
///
/// let config = SseConfig::default()
///     .path("/events")
///     .commands_path("/events/commands")
///     .cookie_name("session_token")
///     .keep_alive(Duration::from_secs(20))
///     .retry(Duration::from_secs(2))
///     .max_rooms(8)
///     .allowed_origins(["https://app.example.com"]);
/// assert!(config.check().is_ok());
/// assert!(SseConfig::default().max_rooms(0).check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    /// Route of the event stream (`GET`).
    pub path: String,
    /// Route of the commands endpoint (`POST`, and `OPTIONS` for CORS preflights).
    pub commands_path: String,
    /// Cookie that may carry the bearer token (browsers cannot set headers on `EventSource`).
    pub cookie_name: String,
    /// How long the stream may stay silent before the server writes a keep-alive comment; also
    /// announced as `connected.ping_interval_ms`.
    pub keep_alive: Duration,
    /// Reconnection delay advised to the browser with the `retry:` field of the first event.
    pub retry: Duration,
    /// Most rooms one connection may be in: rooms named in the URL plus rooms joined through
    /// the commands endpoint. At most 64, which bounds the cursor.
    pub max_rooms: usize,
    /// Largest command body accepted by the commands endpoint; larger ones get `413`.
    pub max_frame_size: usize,
    /// Allowed `Origin` header values; `None` allows any origin but sends no CORS headers, so
    /// only same-origin pages (and non-browser clients) can read the stream. Requests without an
    /// `Origin` header (non-browser clients, same-origin `GET`s) are always allowed. Listed
    /// origins get CORS headers with credentials, and any other origin is refused with `403`.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            path: "/sse".into(),
            commands_path: "/sse/commands".into(),
            cookie_name: "streamgate_token".into(),
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_millis(1000),
            max_rooms: 32,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            allowed_origins: None,
        }
    }
}

/// An invalid [`SseConfig`] field; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SSE configuration: {0}")]
pub struct SseConfigError(String);

impl SseConfig {
    /// Sets the route of the event stream.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the route of the commands endpoint.
    #[must_use]
    pub fn commands_path(mut self, path: impl Into<String>) -> Self {
        self.commands_path = path.into();
        self
    }

    /// Sets the name of the cookie that may carry the token.
    #[must_use]
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Sets the keep-alive interval.
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets the reconnection delay advised to browsers.
    #[must_use]
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = delay;
        self
    }

    /// Sets the most rooms per connection.
    #[must_use]
    pub fn max_rooms(mut self, rooms: usize) -> Self {
        self.max_rooms = rooms;
        self
    }

    /// Sets the largest command body.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Restricts browser origins (and enables CORS for them).
    #[must_use]
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Checks every field; the error names the field.
    pub fn check(&self) -> Result<(), SseConfigError> {
        let fail = |m: &str| Err(SseConfigError(m.into()));
        if !is_route(&self.path) {
            return fail(ROUTE_RULE_PATH);
        }
        if !is_route(&self.commands_path) {
            return fail(ROUTE_RULE_COMMANDS);
        }
        if self.path == self.commands_path {
            return fail("commands_path: must differ from path");
        }
        if !is_cookie_name(&self.cookie_name) {
            return fail("cookie_name: must be 1-64 characters of ASCII letters, digits, '_', '-'");
        }
        if self.keep_alive.is_zero() || self.keep_alive > Duration::from_secs(3600) {
            return fail("keep_alive: must be between 1 ms and 1 hour");
        }
        if self.retry.as_millis() == 0 || self.retry > Duration::from_secs(3600) {
            return fail("retry: must be between 1 ms and 1 hour");
        }
        if !(1..=MAX_CURSOR_ROOMS).contains(&self.max_rooms) {
            return fail("max_rooms: must be between 1 and 64");
        }
        if !(16..=16 * 1024 * 1024).contains(&self.max_frame_size) {
            return fail("max_frame_size: must be between 16 bytes and 16 MiB");
        }
        Ok(())
    }

    /// The keep-alive interval in milliseconds, as announced to clients.
    pub(crate) fn keep_alive_ms(&self) -> u64 {
        u64::try_from(self.keep_alive.as_millis()).unwrap_or(u64::MAX)
    }
}

const ROUTE_RULE_PATH: &str =
    "path: must start with '/' and hold only ASCII letters, digits and '/', '_', '-', '.', '~'";
const ROUTE_RULE_COMMANDS: &str = "commands_path: must start with '/' and hold only ASCII letters, digits and '/', '_', '-', '.', '~'";

/// A static route: no captures (`{id}`, `:id`) or wildcards, which axum would interpret (or
/// refuse with a panic when the router is built).
fn is_route(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b'~'))
}

/// A conservative subset of RFC 6265's cookie-name token.
fn is_cookie_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = SseConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.path, "/sse");
        assert_eq!(c.commands_path, "/sse/commands");
        assert_eq!(c.cookie_name, "streamgate_token");
        assert_eq!(c.keep_alive, Duration::from_secs(15));
        assert_eq!(c.retry, Duration::from_millis(1000));
        assert_eq!(c.max_rooms, 32);
        assert_eq!(c.max_frame_size, 64 * 1024);
        assert_eq!(c.allowed_origins, None);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = [
            (SseConfig::default().path("sse"), "path"),
            (SseConfig::default().path("/sse/{id}"), "path"),
            (SseConfig::default().path("/sse/:id"), "path"),
            (SseConfig::default().commands_path("/sse"), "commands_path"),
            (SseConfig::default().commands_path("/c*"), "commands_path"),
            (SseConfig::default().cookie_name(""), "cookie_name"),
            (SseConfig::default().cookie_name("a b"), "cookie_name"),
            (SseConfig::default().cookie_name("a=b"), "cookie_name"),
            (
                SseConfig::default().keep_alive(Duration::ZERO),
                "keep_alive",
            ),
            (SseConfig::default().retry(Duration::ZERO), "retry"),
            (
                SseConfig::default().retry(Duration::from_micros(10)),
                "retry",
            ),
            (SseConfig::default().max_rooms(0), "max_rooms"),
            (SseConfig::default().max_rooms(65), "max_rooms"),
            (SseConfig::default().max_frame_size(8), "max_frame_size"),
        ];
        for (config, field) in bad {
            let err = config.check().map(|()| config.clone());
            match err {
                Err(SseConfigError(m)) => assert!(m.starts_with(field), "{m} for {field}"),
                Ok(c) => panic!("accepted {c:?}"),
            }
        }
    }
}
