//! What the chat publishes into a conversation room: event names and their data.
//!
//! | event | to | data |
//! | --- | --- | --- |
//! | `message.created` | the room | [`MessageView`](super::MessageView): `{id, author, text, ts}` |
//! | `message.edited` | the room | [`MessageView`](super::MessageView) with `edited_ts` |
//! | `message.deleted` | the room | [`Deleted`]: `{id}` |
//! | `message.read` | the room | [`Receipt`]: `{message_id, user}` |
//! | `message.status` | the author's sessions only (live, not logged) | [`Status`]: `{message_id, user, status: "delivered"}` |
//! | `typing.start` / `typing.stop` | the room (volatile) | published by the hub's built-in typing commands |

use serde::{Deserialize, Serialize};

/// A message was sent.
pub const CREATED: &str = "message.created";
/// A message was edited by its author.
pub const EDITED: &str = "message.edited";
/// A message was deleted by its author.
pub const DELETED: &str = "message.deleted";
/// A member read a message (a read receipt).
pub const READ: &str = "message.read";
/// A message reached a recipient's client; sent to the author only.
pub const STATUS: &str = "message.status";

/// The data of `message.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The deleted message.
    pub id: u64,
}

/// The data of `message.read`: `user` read `message_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The message read.
    pub message_id: u64,
    /// Who read it.
    pub user: String,
}

/// How far a message got, in `message.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// The recipient's client received it.
    Delivered,
}

/// The data of `message.status`, sent to the author: `message_id` reached `user`.
///
/// ```
/// use streamgate_examples::chat::events::{Delivery, Status};
///
/// let status = Status { message_id: 3, user: "bob".into(), status: Delivery::Delivered };
/// assert_eq!(
///     serde_json::to_value(&status)?,
///     serde_json::json!({"message_id": 3, "user": "bob", "status": "delivered"}),
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The message.
    pub message_id: u64,
    /// The recipient.
    pub user: String,
    /// What happened.
    pub status: Delivery,
}
