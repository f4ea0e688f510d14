use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::{ErrorCode, Payload, PayloadError, Publication};

/// One text chunk of a stream (an LLM token). Event name `stream.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The text.
    pub text: String,
}

/// A named workflow event with data (`node.start`, `tool.call` …). Event name `stream.event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct StreamEvent {
    /// The event's name.
    #[validate(length(min = 1, max = 128))]
    pub name: String,
    /// Its data.
    #[serde(default)]
    pub data: Payload,
}

/// How far a stream has come. Event name `stream.progress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
pub struct Progress {
    /// Fraction done, `0.0..=1.0`.
    #[validate(range(min = 0.0, max = 1.0))]
    pub value: f32,
    /// Current stage, e.g. `retrieval`.
    pub stage: Option<String>,
    /// A message for people.
    pub message: Option<String>,
}

/// The stream finished. Event name `stream.complete`; terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Complete {
    /// The run's result, `null` when there is none.
    #[serde(default)]
    pub result: Payload,
}

/// The stream failed. Event name `stream.error`; terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// Why, e.g. [`ErrorCode::StreamAborted`].
    pub code: ErrorCode,
    /// A message for people.
    pub message: String,
}

/// A client stopped the stream (the `stream.cancel` command) and the producer ended it. Event
/// name `stream.cancelled`; terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cancelled {
    /// What the run produced before it stopped, `null` when there is nothing to report.
    #[serde(default)]
    pub result: Payload,
}

/// One update of a producer's stream. Each becomes one publication in the stream's room, with
/// the event name from [`StreamUpdate::event_name`] and the variant's fields as JSON data.
///
/// ```
/// use streamgate_protocol::{StreamUpdate, Token};
///
/// let update = StreamUpdate::Token(Token { text: "Hel".into() });
/// assert_eq!(update.event_name(), "stream.token");
/// assert_eq!(update.to_payload()?.as_str(), r#"{"text":"Hel"}"#);
/// assert!(!update.is_terminal());
/// # Ok::<(), streamgate_protocol::PayloadError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum StreamUpdate {
    /// `stream.token`
    Token(Token),
    /// `stream.event`
    Event(StreamEvent),
    /// `stream.progress`
    Progress(Progress),
    /// `stream.complete` (terminal)
    Complete(Complete),
    /// `stream.error` (terminal)
    Error(StreamError),
    /// `stream.cancelled` (terminal)
    Cancelled(Cancelled),
}

impl StreamUpdate {
    /// Event name of a token update.
    pub const TOKEN: &'static str = "stream.token";
    /// Event name of a workflow event update.
    pub const EVENT: &'static str = "stream.event";
    /// Event name of a progress update.
    pub const PROGRESS: &'static str = "stream.progress";
    /// Event name of the successful terminal update.
    pub const COMPLETE: &'static str = "stream.complete";
    /// Event name of the failed terminal update.
    pub const ERROR: &'static str = "stream.error";
    /// Event name of the terminal update after a client's Stop.
    pub const CANCELLED: &'static str = "stream.cancelled";

    /// The publication event name for this update.
    #[must_use]
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Token(_) => Self::TOKEN,
            Self::Event(_) => Self::EVENT,
            Self::Progress(_) => Self::PROGRESS,
            Self::Complete(_) => Self::COMPLETE,
            Self::Error(_) => Self::ERROR,
            Self::Cancelled(_) => Self::CANCELLED,
        }
    }

    /// Whether this update ends the stream.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Complete(_) | Self::Error(_) | Self::Cancelled(_)
        )
    }

    /// The publication data for this update.
    pub fn to_payload(&self) -> Result<Payload, PayloadError> {
        match self {
            Self::Token(v) => Payload::json(v),
            Self::Event(v) => Payload::json(v),
            Self::Progress(v) => Payload::json(v),
            Self::Complete(v) => Payload::json(v),
            Self::Error(v) => Payload::json(v),
            Self::Cancelled(v) => Payload::json(v),
        }
    }

    /// Reads a stream update back from a publication; `None` when the event is not a stream
    /// update.
    pub fn from_publication(publication: &Publication) -> Option<Result<Self, PayloadError>> {
        let data = &publication.data;
        Some(match publication.event.as_str() {
            Self::TOKEN => data.decode().map(Self::Token),
            Self::EVENT => data.decode().map(Self::Event),
            Self::PROGRESS => data.decode().map(Self::Progress),
            Self::COMPLETE => data.decode().map(Self::Complete),
            Self::ERROR => data.decode().map(Self::Error),
            Self::CANCELLED => data.decode().map(Self::Cancelled),
            _ => return None,
        })
    }
}
