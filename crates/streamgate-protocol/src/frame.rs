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
    /// Ask who is present in a joined room; answered with a `reply` whose data is a
    /// [`PresenceSnapshot`].
    Presence(PresenceQuery),
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
        "presence",
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
            Self::Presence(_) => "presence",
        }
    }

    /// Checks field limits (lengths, ranges) that the types alone do not express.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Self::Auth(c) => c.validate(),
            Self::Join(c) => c.validate(),
            Self::Command(c) => c.validate(),
            Self::Refresh(c) => c.validate(),
            Self::Ack(c) => c.validate(),
            Self::Leave(_)
            | Self::Ping(_)
            | Self::TypingStart(_)
            | Self::TypingStop(_)
            | Self::Presence(_) => Ok(()),
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

/// Acknowledge a publication of `room` that was sent with `ack: true`: a logged one by its
/// `offset`, a live-only one (offset 0, such as a targeted publication) by its `id`.
///
/// ```
/// use streamgate_protocol::Ack;
///
/// let logged = Ack::offset("conversation:42".parse()?, 17);
/// assert_eq!(logged.offset, 17);
/// let live = Ack::live("user:u1".parse()?, "l42");
/// assert_eq!(live.pub_id.as_deref(), Some("l42"));
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The room.
    pub room: RoomId,
    /// The publication's offset (0 or absent for a live-only publication).
    #[serde(default)]
    pub offset: u64,
    /// The publication's `id`, for live-only publications (`pub_id` on the wire: a frame's
    /// `id` is its request id).
    #[serde(default)]
    pub pub_id: Option<String>,
}

impl Ack {
    /// Checks that the ack names a publication (an offset or an id of at most 128 bytes).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let named = match &self.pub_id {
            Some(id) => !id.is_empty() && id.len() <= 128,
            None => self.offset > 0,
        };
        if named {
            return Ok(());
        }
        let mut errors = ValidationErrors::new();
        errors.add("offset", ValidationError::new("offset_or_id"));
        Err(errors)
    }

    /// Acknowledges the logged publication at `offset`.
    #[must_use]
    pub fn offset(room: RoomId, offset: u64) -> Self {
        Self {
            room,
            offset,
            pub_id: None,
        }
    }

    /// Acknowledges the live-only publication whose `id` is `pub_id`.
    #[must_use]
    pub fn live(room: RoomId, pub_id: impl Into<String>) -> Self {
        Self {
            room,
            offset: 0,
            pub_id: Some(pub_id.into()),
        }
    }
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

/// Ask for the presence of a joined room: who is there, online or away, and who is typing.
///
/// ```
/// use streamgate_protocol::{Command, PresenceQuery};
///
/// let query = Command::Presence(PresenceQuery { room: "conversation:42".parse()? });
/// assert_eq!(query.name(), "presence");
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceQuery {
    /// The room; the session must have joined it.
    pub room: RoomId,
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
    /// Generic answer to a request (`ack`, `command`, `refresh`, `typing_*`, `presence`).
    Reply(Reply),
    /// A request failed, or an error not tied to a request (`id` absent).
    Error(ErrorFrame),
    /// Who came, went, or changed state in a room.
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

/// How present a user is in a room. Several sessions of one user count once: the user is
/// `away` only when every one of their sessions in the room has been inactive for the server's
/// `presence_away_after` (60 s by default).
///
/// ```
/// use streamgate_protocol::PresenceState;
///
/// assert_eq!(PresenceState::default(), PresenceState::Online);
/// assert_eq!(serde_json::to_string(&PresenceState::Away)?, r#""away""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    /// At least one of the user's sessions in the room was active recently.
    #[default]
    Online,
    /// All of the user's sessions in the room have been inactive for a while.
    Away,
}

/// One present user and their state.
///
/// ```
/// use streamgate_protocol::{PresenceEntry, PresenceState};
///
/// let entry = PresenceEntry::online("u1");
/// assert_eq!(entry.state, PresenceState::Online);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// User id.
    pub user: String,
    /// Online or away; in a diff's `left`, the state the user had before leaving. Missing in
    /// JSON means `online`.
    #[serde(default)]
    pub state: PresenceState,
}

impl PresenceEntry {
    /// An entry for `user` in `state`.
    #[must_use]
    pub fn new(user: impl Into<String>, state: PresenceState) -> Self {
        Self {
            user: user.into(),
            state,
        }
    }

    /// An online entry for `user`.
    #[must_use]
    pub fn online(user: impl Into<String>) -> Self {
        Self::new(user, PresenceState::Online)
    }
}

/// Presence changes in a room, batched: the server collects a room's changes for a short
/// window (50 ms by default) and sends them as one frame. A user who came and went within one
/// window appears in neither list. Apply a diff as set operations: it may repeat what a
/// [`PresenceSnapshot`] taken meanwhile already shows.
///
/// ```
/// use streamgate_protocol::{PresenceDiff, PresenceEntry, PresenceState};
///
/// let diff = PresenceDiff {
///     room: "conversation:42".parse()?,
///     joined: vec![PresenceEntry::online("u2")],
///     left: vec![],
///     updated: vec![PresenceEntry::new("u3", PresenceState::Away)],
/// };
/// assert!(!diff.is_empty());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// The room.
    pub room: RoomId,
    /// Users that became present, with their state.
    pub joined: Vec<PresenceEntry>,
    /// Users that left (their last session left the room or disconnected).
    pub left: Vec<PresenceEntry>,
    /// Users still present whose state changed (online ↔ away), with the new state. Missing
    /// in JSON means empty.
    #[serde(default)]
    pub updated: Vec<PresenceEntry>,
}

impl PresenceDiff {
    /// Whether the diff changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && self.updated.is_empty()
    }
}

/// The answer to a [`PresenceQuery`], carried as the `data` of a `reply`: everyone present in
/// the room now, and who is typing.
///
/// ```
/// use streamgate_protocol::{PresenceEntry, PresenceSnapshot};
///
/// let snapshot = PresenceSnapshot {
///     room: "conversation:42".parse()?,
///     users: vec![PresenceEntry::online("u1")],
///     typing: vec!["u1".into()],
/// };
/// assert_eq!(
///     serde_json::to_string(&snapshot)?,
///     r#"{"room":"conversation:42","users":[{"user":"u1","state":"online"}],"typing":["u1"]}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    /// The room.
    pub room: RoomId,
    /// Present users, sorted by user id.
    pub users: Vec<PresenceEntry>,
    /// Users typing now, sorted.
    #[serde(default)]
    pub typing: Vec<String>,
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
