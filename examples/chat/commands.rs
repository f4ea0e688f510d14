//! The chat's application commands: names, typed data, typed replies, and the handlers.
//!
//! Every command concerns the conversation named in the command frame's `room`, which the
//! session must have joined (`NOT_JOINED` otherwise). Before a handler runs, the gateway has
//! rate limited the command and [`TenantPolicy`](streamgate::TenantPolicy) has checked that
//! the room belongs to the sender's organisation (`ROOM_ACCESS_DENIED` otherwise).
//!
//! | command | data | reply | refusals |
//! | --- | --- | --- | --- |
//! | `message.send` | [`SendMessage`] `{text}` | [`Sent`] `{id, ts}` | `VALIDATION_FAILED` (text not 1–4000 characters) |
//! | `message.edit` | [`EditMessage`] `{message_id, text}` | [`Edited`] `{id, edited_ts}` | `PERMISSION_DENIED` (not the author), `VALIDATION_FAILED` (unknown or deleted message, bad text) |
//! | `message.delete` | [`MessageRef`] `{message_id}` | [`Removed`] `{id}` | as `message.edit` |
//! | `message.read` | [`MessageRef`] | [`Recorded`] `{message_id, first}` | `VALIDATION_FAILED` (unknown or deleted message) |
//! | `message.delivered` | [`MessageRef`] | [`Recorded`] | as `message.read` |
//! | `message.list` | [`ListMessages`] `{before?, limit?}` | [`Page`] `{messages}` | `VALIDATION_FAILED` (limit not 1–100) |
//!
//! ```json
//! {"type":"command","id":7,"name":"message.send","room":"conversation:acme.42","data":{"text":"hello"}}
//! {"type":"reply","id":7,"data":{"id":1,"ts":1767225600000}}
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use streamgate::{CommandContext, CommandError, Publish, RoomId, Target};
use validator::Validate;

use super::{
    ROOM_KIND,
    events::{self, Delivery, Receipt, Status},
    store::{Message, MessageView, Messages, now_ms},
};

/// Sends a message.
pub const SEND: &str = "message.send";
/// Edits one of the sender's messages.
pub const EDIT: &str = "message.edit";
/// Deletes one of the sender's messages.
pub const DELETE: &str = "message.delete";
/// Marks a message read (a read receipt for the room).
pub const READ: &str = "message.read";
/// Confirms a message reached this client (a delivery status for its author).
pub const DELIVERED: &str = "message.delivered";
/// Lists a conversation's messages, for a client that could not resume the room.
pub const LIST: &str = "message.list";

/// The data of `message.send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The text: 1 to 4000 characters.
    #[validate(length(min = 1, max = 4000))]
    pub text: String,
}

/// The data of `message.edit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The message to edit.
    pub message_id: u64,
    /// Its new text: 1 to 4000 characters.
    #[validate(length(min = 1, max = 4000))]
    pub text: String,
}

/// The data of `message.delete`, `message.read` and `message.delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct MessageRef {
    /// The message.
    pub message_id: u64,
}

fn default_limit() -> u32 {
    50
}

/// The data of `message.list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ListMessages {
    /// Only messages with a smaller id (default: up to the newest).
    #[serde(default)]
    pub before: Option<u64>,
    /// At most this many, 1 to 100 (default 50).
    #[serde(default = "default_limit")]
    #[validate(range(min = 1, max = 100))]
    pub limit: u32,
}

/// The reply to `message.send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The new message's id.
    pub id: u64,
    /// When it was stored (Unix milliseconds).
    pub ts: u64,
}

/// The reply to `message.edit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edited {
    /// The message.
    pub id: u64,
    /// When it was edited (Unix milliseconds).
    pub edited_ts: u64,
}

/// The reply to `message.delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The deleted message.
    pub id: u64,
}

/// The reply to `message.read` and `message.delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The message.
    pub message_id: u64,
    /// Whether this was the sender's first such receipt for the message, and so published.
    /// Repeated receipts, and receipts for one's own messages, are recorded once and published
    /// never.
    pub first: bool,
}

/// The reply to `message.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The messages, oldest first; deleted ones as tombstones (`deleted: true`, no text).
    pub messages: Vec<MessageView>,
}

/// The conversation the command is about, after checking the session joined it.
fn conversation(ctx: &CommandContext) -> Result<RoomId, CommandError> {
    let room = ctx.room().ok_or_else(|| {
        CommandError::Invalid("name the conversation in the command's room".into())
    })?;
    if room.kind() != ROOM_KIND {
        return Err(CommandError::Invalid(format!(
            "chat commands concern {ROOM_KIND} rooms"
        )));
    }
    if !ctx.is_member(room) {
        return Err(CommandError::NotJoined);
    }
    Ok(room.clone())
}

/// The sender's user id; an anonymous sender may not chat.
fn sender(ctx: &CommandContext) -> Result<String, CommandError> {
    ctx.principal()
        .user
        .clone()
        .ok_or(CommandError::PermissionDenied)
}

fn publish(ctx: &CommandContext, room: &RoomId, publish: Publish) -> Result<(), CommandError> {
    ctx.hub()
        .publish(room, publish)
        .map(|_| ())
        .map_err(|e| CommandError::Internal(format!("publish into {room}: {e}")))
}

fn event(name: &str, data: &impl Serialize) -> Result<Publish, CommandError> {
    Publish::json(name, data).map_err(|e| CommandError::Internal(e.to_string()))
}

/// The message `id` if it exists and is not deleted.
fn live(message: Option<&mut Message>, id: u64) -> Result<&mut Message, CommandError> {
    match message {
        None => Err(CommandError::NotFound(format!(
            "no message {id} in this conversation"
        ))),
        Some(m) if m.deleted => Err(CommandError::NotFound(format!("message {id} was deleted"))),
        Some(m) => Ok(m),
    }
}

/// The message `id` if the sender wrote it and it is not deleted.
fn own<'a>(
    message: Option<&'a mut Message>,
    id: u64,
    user: &str,
) -> Result<&'a mut Message, CommandError> {
    match message {
        Some(m) if m.author != user => Err(CommandError::PermissionDenied),
        other => live(other, id),
    }
}

// Each handler changes the conversation and publishes the change under the conversation's
// lock, publishing first: a publish that fails (the gateway is shutting down) changes nothing.

pub(crate) fn send(
    messages: &Messages,
    ctx: &CommandContext,
    data: SendMessage,
) -> Result<Sent, CommandError> {
    let room = conversation(ctx)?;
    let author = sender(ctx)?;
    messages.with(&room, |c| {
        let message = c.draft(author, data.text);
        publish(
            ctx,
            &room,
            event(events::CREATED, &MessageView::from(&message))?,
        )?;
        let sent = Sent {
            id: message.id,
            ts: message.ts,
        };
        c.insert(message);
        Ok(sent)
    })
}

pub(crate) fn edit(
    messages: &Messages,
    ctx: &CommandContext,
    data: EditMessage,
) -> Result<Edited, CommandError> {
    let room = conversation(ctx)?;
    let user = sender(ctx)?;
    messages.with(&room, |c| {
        let message = own(c.get_mut(data.message_id), data.message_id, &user)?;
        let edited_ts = now_ms();
        let view = MessageView {
            text: data.text,
            edited_ts: Some(edited_ts),
            ..MessageView::from(&*message)
        };
        publish(ctx, &room, event(events::EDITED, &view)?)?;
        message.text = view.text;
        message.edited_ts = Some(edited_ts);
        Ok(Edited {
            id: message.id,
            edited_ts,
        })
    })
}

pub(crate) fn delete(
    messages: &Messages,
    ctx: &CommandContext,
    data: MessageRef,
) -> Result<Removed, CommandError> {
    let room = conversation(ctx)?;
    let user = sender(ctx)?;
    messages.with(&room, |c| {
        let message = own(c.get_mut(data.message_id), data.message_id, &user)?;
        let id = message.id;
        publish(ctx, &room, event(events::DELETED, &events::Deleted { id })?)?;
        message.deleted = true;
        message.text.clear();
        Ok(Removed { id })
    })
}

pub(crate) fn read(
    messages: &Messages,
    ctx: &CommandContext,
    data: MessageRef,
) -> Result<Recorded, CommandError> {
    receipt(
        messages,
        ctx,
        data,
        |m| &mut m.read_by,
        |message, user| {
            let receipt = Receipt {
                message_id: message.id,
                user: user.to_owned(),
            };
            event(events::READ, &receipt)
        },
    )
}

pub(crate) fn delivered(
    messages: &Messages,
    ctx: &CommandContext,
    data: MessageRef,
) -> Result<Recorded, CommandError> {
    receipt(
        messages,
        ctx,
        data,
        |m| &mut m.delivered_to,
        |message, user| {
            let status = Status {
                message_id: message.id,
                user: user.to_owned(),
                status: Delivery::Delivered,
            };
            // Only the author's sessions (those in the room) get it; live-only, never replayed.
            let to_author = Target {
                users: vec![message.author.clone()],
                ..Target::default()
            };
            Ok(event(events::STATUS, &status)?.to(to_author))
        },
    )
}

/// Records a receipt of the sender in the set `seen` picks, publishing `make`'s publication
/// the first time; a repeat, or a receipt for one's own message, publishes nothing.
fn receipt(
    messages: &Messages,
    ctx: &CommandContext,
    data: MessageRef,
    seen: fn(&mut Message) -> &mut BTreeSet<String>,
    make: impl FnOnce(&Message, &str) -> Result<Publish, CommandError>,
) -> Result<Recorded, CommandError> {
    let room = conversation(ctx)?;
    let user = sender(ctx)?;
    let message_id = data.message_id;
    messages.with(&room, |c| {
        let message = live(c.get_mut(message_id), message_id)?;
        let first = message.author != user && !seen(message).contains(&user);
        if first {
            publish(ctx, &room, make(message, &user)?)?;
            seen(message).insert(user);
        }
        Ok(Recorded { message_id, first })
    })
}

pub(crate) fn list(
    messages: &Messages,
    ctx: &CommandContext,
    data: ListMessages,
) -> Result<Page, CommandError> {
    let room = conversation(ctx)?;
    let limit = usize::try_from(data.limit).unwrap_or(usize::MAX);
    Ok(messages.with(&room, |c| Page {
        messages: c.page(data.before, limit).map(MessageView::from).collect(),
    }))
}
