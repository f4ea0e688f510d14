use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $name:literal, recoverable = $rec:literal; )*) => {
        /// Every error the gateway reports, on every transport.
        ///
        /// Each code has a fixed wire name (`AUTH_FAILED` …), a fixed number (also the WebSocket
        /// close code used when the error ends a connection) and a fixed [`recoverable`] flag:
        /// `true` means the client may retry or reconnect and resume; `false` means retrying the
        /// same request will fail the same way.
        ///
        /// ```
        /// use streamgate_protocol::ErrorCode;
        ///
        /// assert_eq!(ErrorCode::SlowConsumer.as_str(), "SLOW_CONSUMER");
        /// assert!(ErrorCode::SlowConsumer.recoverable());
        /// assert!(!ErrorCode::AuthFailed.recoverable());
        /// assert_eq!(ErrorCode::AuthFailed.number(), 4001);
        /// ```
        ///
        /// [`recoverable`]: ErrorCode::recoverable
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// All codes, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire name, e.g. `RATE_LIMITED`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The fixed number of this code; also the WebSocket close code (4000–4999) used
            /// when this error closes a connection.
            #[must_use]
            pub const fn number(self) -> u16 {
                match self { $(ErrorCode::$variant => $number,)* }
            }

            /// Whether retrying or reconnecting may succeed.
            #[must_use]
            pub const fn recoverable(self) -> bool {
                match self { $(ErrorCode::$variant => $rec,)* }
            }

            /// Position of the code in [`ErrorCode::ALL`], for per-code counters.
            #[must_use]
            pub const fn index(self) -> usize {
                (self.number() - 4001) as usize
            }
        }
    };
}

error_codes! {
    /// Credentials are missing, malformed or invalid.
    AuthFailed = 4001, "AUTH_FAILED", recoverable = false;
    /// The session's token expired; reconnect with a fresh token and resume.
    TokenExpired = 4002, "TOKEN_EXPIRED", recoverable = true;
    /// The principal may not perform this action.
    PermissionDenied = 4003, "PERMISSION_DENIED", recoverable = false;
    /// The principal may not join or publish to this room.
    RoomAccessDenied = 4004, "ROOM_ACCESS_DENIED", recoverable = false;
    /// Too many requests; retry after `retry_after_ms`.
    RateLimited = 4005, "RATE_LIMITED", recoverable = true;
    /// The frame decoded but a field is invalid (room id, range, length, missing field).
    ValidationFailed = 4006, "VALIDATION_FAILED", recoverable = false;
    /// The frame is not valid JSON or bincode for the negotiated codec.
    ProtocolError = 4007, "PROTOCOL_ERROR", recoverable = false;
    /// The frame names a command this server does not know.
    UnknownCommand = 4008, "UNKNOWN_COMMAND", recoverable = false;
    /// The frame is larger than the configured limit (WebSocket close 1009).
    FrameTooLarge = 4009, "FRAME_TOO_LARGE", recoverable = false;
    /// The command needs a room the session has not joined.
    NotJoined = 4010, "NOT_JOINED", recoverable = false;
    /// The session did not read fast enough and its queue overflowed; reconnect and resume.
    SlowConsumer = 4011, "SLOW_CONSUMER", recoverable = true;
    /// The server is at capacity; retry after `retry_after_ms`.
    ServerOverloaded = 4012, "SERVER_OVERLOADED", recoverable = true;
    /// The server is shutting down; reconnect (to another node) and resume.
    ShuttingDown = 4013, "SHUTTING_DOWN", recoverable = true;
    /// A stream's producer went away without a terminal update.
    StreamAborted = 4014, "STREAM_ABORTED", recoverable = false;
    /// No frame (not even a pong) arrived within the idle timeout.
    IdleTimeout = 4015, "IDLE_TIMEOUT", recoverable = true;
    /// The server failed; the details are in its logs, never on the wire.
    Internal = 4016, "INTERNAL", recoverable = true;
    /// The room already has as many members as its kind allows; retry later.
    RoomFull = 4017, "ROOM_FULL", recoverable = true;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels on the wire: the code, a human-readable message without internal
/// detail, the code's `recoverable` flag and, for rate limits, when to retry.
///
/// ```
/// use streamgate_protocol::{ErrorBody, ErrorCode};
///
/// let err = ErrorBody::new(ErrorCode::RateLimited, "slow down").with_retry_after_ms(1500);
/// assert!(err.recoverable);
/// assert_eq!(err.retry_after_ms, Some(1500));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub code: ErrorCode,
    /// A short explanation for people; never contains internal detail.
    pub message: String,
    /// Copied from [`ErrorCode::recoverable`] so clients need no table.
    pub recoverable: bool,
    /// For `RATE_LIMITED` and `SERVER_OVERLOADED`: milliseconds to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// An error with the code's fixed `recoverable` flag.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            recoverable: code.recoverable(),
            retry_after_ms: None,
        }
    }

    /// Adds retry advice.
    #[must_use]
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_and_index_matches() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code}");
            assert!((4000..5000).contains(&code.number()));
        }
    }

    #[test]
    fn serde_name_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
