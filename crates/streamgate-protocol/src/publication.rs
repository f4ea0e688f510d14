use serde::{Deserialize, Serialize};

use crate::{Payload, RoomId};

/// A place in a room's log: the room's `epoch` and an `offset` in it.
///
/// Offsets start at 1 and grow by one per logged publication. The epoch changes when the room's
/// history is lost (a restart of a node without a shared backplane, an expired room), so a client
/// that holds a position from another epoch knows that it cannot resume.
///
/// ```
/// use streamgate_protocol::Position;
///
/// let p = Position { epoch: 7, offset: 42 };
/// assert!(p.offset > 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Position {
    /// Identifies one continuous life of the room's history.
    pub epoch: u64,
    /// The offset of the last publication in the log at that epoch (0 when empty).
    pub offset: u64,
}

/// Delivery priority chosen by the producer. It is carried to clients so they can order their
/// own rendering; the gateway keeps per-room order regardless of priority.
///
/// ```
/// use streamgate_protocol::Priority;
/// assert_eq!(Priority::default(), Priority::Normal);
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Nice to have.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Show promptly.
    High,
    /// Must not be missed.
    Critical,
}

/// One message into a room, as clients receive it.
///
/// `offset` is the publication's place in the room's log; `0` marks a live-only publication
/// (volatile, or targeted at some users or sessions) that is not logged and cannot be recovered.
///
/// ```
/// use streamgate_protocol::{Payload, Priority, Publication};
///
/// let p = Publication {
///     room: "execution:1".parse()?,
///     offset: 1,
///     epoch: 9,
///     id: "p-1".into(),
///     event: "stream.token".into(),
///     data: Payload::json(&serde_json::json!({"text": "Hel"}))?,
///     ts: 1_700_000_000_000,
///     priority: Priority::Normal,
///     ack: false,
/// };
/// assert!(p.is_logged());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The room it was published to.
    pub room: RoomId,
    /// Place in the room's log, starting at 1; `0` for live-only publications.
    pub offset: u64,
    /// The room's epoch when it was published.
    pub epoch: u64,
    /// Unique id (producer-supplied or generated).
    pub id: String,
    /// Event name, e.g. `stream.token`, `message.created`.
    pub event: String,
    /// Application data (JSON).
    #[serde(default)]
    pub data: Payload,
    /// Publication time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// Producer's priority.
    #[serde(default)]
    pub priority: Priority,
    /// Whether the producer asked recipients to acknowledge it.
    #[serde(default)]
    pub ack: bool,
}

impl Publication {
    /// Whether the publication is part of the room's log (and so can be recovered).
    #[must_use]
    pub fn is_logged(&self) -> bool {
        self.offset > 0
    }

    /// The position just after this publication, for resuming.
    #[must_use]
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}
