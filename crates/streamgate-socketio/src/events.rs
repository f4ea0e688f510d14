//! Socket.IO event names, both ways. The payload of every server event is the frame as the
//! JSON codec writes it (see `docs/protocol-socketio.md`).

use streamgate_protocol::StreamUpdate;

/// Server → client: the session is open (the `connected` frame). Always the first event.
pub const CONNECTED: &str = "gateway.connected";
/// Server → client: a publication whose event is neither `stream.complete` nor `stream.error`
/// (tokens, progress, workflow events, application events).
pub const STREAM_DATA: &str = "stream.data";
/// Server → client: a publication whose event is `stream.complete`.
pub const STREAM_COMPLETE: &str = StreamUpdate::COMPLETE;
/// Server → client: a publication whose event is `stream.error`.
pub const STREAM_ERROR: &str = StreamUpdate::ERROR;
/// Server → client: the terminal `stream.cancelled` publication (a client stopped the stream).
pub const STREAM_CANCELLED: &str = StreamUpdate::CANCELLED;
/// Server → client: a presence diff of a joined room.
pub const PRESENCE: &str = "presence";
/// Server → client: an error that answers no acknowledgement callback.
pub const ERROR: &str = "gateway.error";
/// Server → client: the server is ending the session (the `disconnect` frame), sent just
/// before the socket is disconnected.
pub const DISCONNECT: &str = "gateway.disconnect";
/// The session's credentials expire soon: send `refresh` (the `token.expiring` frame).
pub const TOKEN_EXPIRING: &str = "token.expiring";

/// Client → server: the commands, as Socket.IO event names. Each takes one object payload with
/// the fields of the JSON codec's frame of the same `type`, and an acknowledgement callback.
pub const COMMANDS: &[&str] = &[
    "join",
    "leave",
    "ack",
    "typing_start",
    "typing_stop",
    "command",
    "refresh",
    "ping",
    "presence",
];

/// The event a publication is emitted as, from the publication's own `event`.
///
/// ```
/// use streamgate_socketio::events;
///
/// assert_eq!(events::for_publication("stream.token"), "stream.data");
/// assert_eq!(events::for_publication("stream.complete"), "stream.complete");
/// assert_eq!(events::for_publication("message.created"), "stream.data");
/// ```
#[must_use]
pub fn for_publication(event: &str) -> &'static str {
    match event {
        StreamUpdate::COMPLETE => STREAM_COMPLETE,
        StreamUpdate::ERROR => STREAM_ERROR,
        StreamUpdate::CANCELLED => STREAM_CANCELLED,
        _ => STREAM_DATA,
    }
}
