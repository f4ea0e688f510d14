//! Client commands and server frames.

use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError, ValidationErrors};

use crate::{ErrorBody, ErrorCode, Payload, Position, Publication, RoomId};

/// Most event names in one join filter.
const MAX_FILTER_EVENTS: usize = 64;

/// One frame from a client: a command and an optional request id that the server echoes in its
/// reply, so clients can correlate answers with requests.
///
/// ```
/// use streamgate_protocol::{ClientFrame, Command, Ping};
///
/// let frame = ClientFrame::new(Command::Ping(Ping {})).with_id(7);
/// assert_eq!(frame.id, Some(7));
/// assert_eq!(frame.cmd.name(), "ping");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Request id, echoed by the reply.
    pub id: Option<u64>,
    /// What the client asks for.
    pub cmd: Command,
}

impl ClientFrame {
    /// A frame without a request id.
    #[must_use]
    pub fn new(cmd: Command) -> Self {
        Self { id: None, cmd }
    }

    /// Sets the request id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }
}

/// Everything a client can ask of the server. The JSON codec writes the variant name as the
/// frame's `type` (`join`, `typing_start` …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Authenticate (the first frame, when credentials were not in the handshake).
    Auth(Auth),
    /// Join a room, optionally resuming after an offset.
    Join(Join),
    /// Leave a room.
    Leave(Leave),
    /// Acknowledge a publication sent with `ack: true`.
    Ack(Ack),
    /// Application-level heartbeat; answered with `pong`.
    Ping(Ping),
    /// The user started typing in a room.
    TypingStart(Typing),
    /// The user stopped typing in a room.
    TypingStop(Typing),
    /// An application command, handled by the application's handler.
    Command(UserCommand),
    /// Replace the session's credentials before they expire.
    Refresh(Refresh),
}

impl Command {
    /// The wire names of all commands, as the JSON codec's `type`.
    pub const NAMES: &'static [&'static str] = &[
        "auth",
        "join",
        "leave",
        "ack",
        "ping",
        "typing_start",
        "typing_stop",
        "command",
        "refresh",
    ];

    /// This command's wire name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::Join(_) => "join",
            Self::Leave(_) => "leave",
            Self::Ack(_) => "ack",
            Self::Ping(_) => "ping",
            Self::TypingStart(_) => "typing_start",
            Self::TypingStop(_) => "typing_stop",
            Self::Command(_) => "command",
            Self::Refresh(_) => "refresh",
        }
    }

    /// Checks field limits (lengths, ranges) that the types alone do not express.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Self::Auth(c) => c.validate(),
            Self::Join(c) => c.validate(),
            Self::Command(c) => c.validate(),
            Self::Refresh(c) => c.validate(),
            Self::Leave(_)
            | Self::Ack(_)
            | Self::Ping(_)
            | Self::TypingStart(_)
            | Self::TypingStop(_) => Ok(()),
        }
    }
}

/// Credentials sent as the first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct Auth {
    /// A bearer token (JWT, API key, or a development token).
    #[validate(length(min = 1, max = 16384))]
    pub token: String,
}

/// Join a room.
///
/// With `since`, the server first sends every logged publication after that offset (in order,
/// each once), then live ones; the `joined` reply says whether that recovery was complete.
///
/// ```
/// use streamgate_protocol::Join;
///
/// let join = Join::new("execution:1".parse()?).since(499, Some(17));
/// assert_eq!(join.since, Some(499));
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct Join {
    /// The room.
    pub room: RoomId,
    /// Resume after this offset: the offset of the last publication the client has.
    pub since: Option<u64>,
    /// The epoch that offset belongs to; when it differs from the room's, recovery fails.
    pub epoch: Option<u64>,
    /// Only deliver publications whose event name is in this list.
    #[validate(length(max = 64), custom(function = validate_event_names))]
    pub events: Option<Vec<String>>,
}

impl Join {
    /// A plain join of `room`.
    #[must_use]
    pub fn new(room: RoomId) -> Self {
        Self {
            room,
            since: None,
            epoch: None,
            events: None,
        }
    }

    /// Resume after `offset` (of `epoch`, when known).
    #[must_use]
    pub fn since(mut self, offset: u64, epoch: Option<u64>) -> Self {
        self.since = Some(offset);
        self.epoch = epoch;
        self
    }

    /// Only receive these event names.
    #[must_use]
    pub fn events<I: IntoIterator<Item = S>, S: Into<String>>(mut self, events: I) -> Self {
        self.events = Some(events.into_iter().map(Into::into).collect());
        self
    }
}

fn validate_event_names(events: &[String]) -> Result<(), ValidationError> {
    if events.len() > MAX_FILTER_EVENTS || events.iter().any(|e| e.is_empty() || e.len() > 128) {
        return Err(ValidationError::new("event_names"));
    }
    Ok(())
}

/// Leave a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The room.
    pub room: RoomId,
}

/// Acknowledge the publication at `offset` in `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The room.
    pub room: RoomId,
    /// The publication's offset.
    pub offset: u64,
}

/// Heartbeat; carries nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ping {}

/// Typing indicator in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// The room.
    pub room: RoomId,
}

/// An application command (`message.send` …) for the application's handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct UserCommand {
    /// Command name.
    #[validate(length(min = 1, max = 64))]
    pub name: String,
    /// The room it concerns, if any.
    pub room: Option<RoomId>,
    /// Its data.
    #[serde(default)]
    pub data: Payload,
}

/// New credentials for a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct Refresh {
    /// The new token.
    #[validate(length(min = 1, max = 16384))]
    pub token: String,
}

/// Everything the server sends. The JSON codec writes the variant name as the frame's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// First frame after successful authentication.
    Connected(Connected),
    /// A publication in a joined room.
    #[serde(rename = "pub")]
    Publication(Publication),
    /// Answer to `join`.
    Joined(Joined),
    /// Answer to `leave`.
    Left(Left),
    /// Answer to `ping`.
    Pong(Pong),
    /// Generic answer to a request (`ack`, `command`, `refresh`, `typing_*`).
    Reply(Reply),
    /// A request failed, or an error not tied to a request (`id` absent).
    Error(ErrorFrame),
    /// Who came and went in a room.
    Presence(PresenceDiff),
    /// The server is closing the connection, and why.
    Disconnect(Disconnect),
    /// The session's credentials expire soon: send `refresh` with a new token in time, or the
    /// session closes with `TOKEN_EXPIRED`.
    #[serde(rename = "token.expiring")]
    TokenExpiring(TokenExpiring),
}

impl ServerFrame {
    /// The wire names of all server frames, as the JSON codec's `type`.
    pub const NAMES: &'static [&'static str] = &[
        "connected",
        "pub",
        "joined",
        "left",
        "pong",
        "reply",
        "error",
        "presence",
        "disconnect",
        "token.expiring",
    ];

    /// An error frame answering request `id`.
    #[must_use]
    pub fn error(id: Option<u64>, error: ErrorBody) -> Self {
        Self::Error(ErrorFrame { id, error })
    }
}

/// Sent once the session is authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// The session id.
    pub session: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The protocol version the server speaks.
    pub version: u16,
    /// How often the server pings; a client may use it to detect dead connections.
    pub ping_interval_ms: u64,
}

/// Answer to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The request id of the `join`.
    pub id: Option<u64>,
    /// The room.
    pub room: RoomId,
    /// The room's epoch.
    pub epoch: u64,
    /// The room's latest offset when the join took effect (before live publications).
    pub offset: u64,
    /// With `since`: whether every missed publication follows. `false` means the history no
    /// longer reaches back (or the epoch changed): reload state, then continue live.
    pub recovered: bool,
    /// How many missed publications follow this frame.
    pub missed: u64,
}

impl Joined {
    /// The room position at join time.
    #[must_use]
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}

/// Answer to `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The request id of the `leave`.
    pub id: Option<u64>,
    /// The room.
    pub room: RoomId,
}

/// Answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The request id of the `ping`.
    pub id: Option<u64>,
}

/// Generic successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request id.
    pub id: u64,
    /// Result data (`null` when there is none).
    #[serde(default)]
    pub data: Payload,
}

/// A failed request, or an error that concerns the whole session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The failed request's id, if the error answers one.
    pub id: Option<u64>,
    /// What went wrong.
    pub error: ErrorBody,
}

/// One present user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// User id.
    pub user: String,
}

/// Presence changes in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// The room.
    pub room: RoomId,
    /// Users that became present.
    pub joined: Vec<PresenceEntry>,
    /// Users that left.
    pub left: Vec<PresenceEntry>,
}

/// The server is closing the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// Why.
    pub code: ErrorCode,
    /// A message for people.
    pub reason: String,
    /// Whether the client should reconnect (and resume); the code's `recoverable` flag.
    pub reconnect: bool,
}

impl Disconnect {
    /// A disconnect for `code`, with `reconnect` from the code's recoverable flag.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            reconnect: code.recoverable(),
        }
    }
}

/// Warning that the session's credentials expire soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenExpiring {
    /// When the credentials expire, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Milliseconds left when the warning was sent.
    pub in_ms: u64,
}
