//! The in-memory message store: conversations, their messages and who received and read them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use streamgate::RoomId;

/// Most messages one conversation keeps; past it the oldest is forgotten.
pub const MAX_MESSAGES: usize = 10_000;

/// One chat message as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id, unique within its conversation, increasing from 1.
    pub id: u64,
    /// The user who sent it.
    pub author: String,
    /// Its text; empty once deleted.
    pub text: String,
    /// When it was sent (Unix milliseconds).
    pub ts: u64,
    /// When it was last edited (Unix milliseconds).
    pub edited_ts: Option<u64>,
    /// Whether its author deleted it (it stays as a tombstone).
    pub deleted: bool,
    /// Users whose client confirmed receiving it.
    pub delivered_to: BTreeSet<String>,
    /// Users who read it.
    pub read_by: BTreeSet<String>,
}

/// A message as clients see it: in `message.created` and `message.edited`, and in the answer
/// to `message.list`. `edited_ts` is left out until the message is edited, `deleted` until it
/// is deleted.
///
/// ```
/// use streamgate_examples::chat::MessageView;
///
/// let view = MessageView { id: 1, author: "alice".into(), text: "hi".into(), ts: 5, edited_ts: None, deleted: false };
/// assert_eq!(
///     serde_json::to_value(&view)?,
///     serde_json::json!({"id": 1, "author": "alice", "text": "hi", "ts": 5}),
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// The message id.
    pub id: u64,
    /// Who sent it.
    pub author: String,
    /// Its text (empty once deleted).
    pub text: String,
    /// When it was sent (Unix milliseconds).
    pub ts: u64,
    /// When it was last edited (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_ts: Option<u64>,
    /// Whether it was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            author: m.author.clone(),
            text: m.text.clone(),
            ts: m.ts,
            edited_ts: m.edited_ts,
            deleted: m.deleted,
        }
    }
}

/// The messages of one conversation room.
#[derive(Debug, Default)]
pub struct Conversation {
    messages: BTreeMap<u64, Message>,
    last_id: u64,
}

impl Conversation {
    /// The next message by `author`, not stored yet: [`insert`](Self::insert) stores it.
    #[must_use]
    pub fn draft(&self, author: String, text: String) -> Message {
        Message {
            id: self.last_id + 1,
            author,
            text,
            ts: now_ms(),
            edited_ts: None,
            deleted: false,
            delivered_to: BTreeSet::new(),
            read_by: BTreeSet::new(),
        }
    }

    /// Stores `message` under the next id (the draft's, when nothing was stored in between),
    /// forgetting the oldest message when the conversation is full.
    pub fn insert(&mut self, mut message: Message) -> &Message {
        self.last_id += 1;
        message.id = self.last_id;
        if self.messages.len() >= MAX_MESSAGES {
            self.messages.pop_first();
        }
        self.messages.entry(message.id).or_insert(message)
    }

    /// Stores a new message by `author` and returns it.
    pub fn post(&mut self, author: String, text: String) -> &Message {
        let message = self.draft(author, text);
        self.insert(message)
    }

    /// The message `id`, deleted or not.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<&Message> {
        self.messages.get(&id)
    }

    /// The message `id`, to change it.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Message> {
        self.messages.get_mut(&id)
    }

    /// Up to `limit` messages with ids below `before` (all when `None`), oldest first.
    pub fn page(&self, before: Option<u64>, limit: usize) -> impl Iterator<Item = &Message> {
        let newest_first = self
            .messages
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .take(limit)
            .map(|(_, m)| m);
        let mut page: Vec<&Message> = newest_first.collect();
        page.reverse();
        page.into_iter()
    }

    /// How many messages are kept, tombstones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// All conversations, each behind its own lock. Cheap to clone (shared).
///
/// A handler holds a conversation's lock while it changes the conversation *and* publishes
/// the change, so the order of the room's publications is the order of the changes. That is
/// deadlock-free: the hub never calls back into the store while it holds a room lock.
///
/// An example store: it keeps everything in memory (bounded per conversation by
/// [`MAX_MESSAGES`]) and forgets it on restart; a real service keeps messages in its database.
///
/// ```
/// use streamgate_examples::chat::Messages;
///
/// let messages = Messages::default();
/// let room = "conversation:acme.1".parse()?;
/// let id = messages.with(&room, |c| c.post("alice".into(), "hi".into()).id);
/// assert_eq!(messages.message(&room, id).map(|m| m.text), Some("hi".into()));
/// # Ok::<(), streamgate::RoomIdError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Messages {
    conversations: Arc<Mutex<HashMap<RoomId, Arc<Mutex<Conversation>>>>>,
}

impl Messages {
    /// Runs `f` on the conversation of `room` (created empty on first use), holding its lock.
    pub fn with<R>(&self, room: &RoomId, f: impl FnOnce(&mut Conversation) -> R) -> R {
        let conversation = Arc::clone(self.conversations.lock().entry(room.clone()).or_default());
        let mut guard = conversation.lock();
        f(&mut guard)
    }

    /// A copy of the message `id` of `room`.
    #[must_use]
    pub fn message(&self, room: &RoomId, id: u64) -> Option<Message> {
        let conversation = self.conversations.lock().get(room).cloned()?;
        let guard = conversation.lock();
        guard.get(id).cloned()
    }
}

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_pages_go_oldest_first() {
        let mut c = Conversation::default();
        for text in ["a", "b", "c", "d"] {
            c.post("alice".into(), text.into());
        }
        let ids = |page: Vec<&Message>| page.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(c.page(None, 2).collect()), [3, 4]);
        assert_eq!(ids(c.page(Some(3), 10).collect()), [1, 2]);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn a_full_conversation_forgets_its_oldest_message() {
        let mut c = Conversation::default();
        for _ in 0..=MAX_MESSAGES {
            c.post("alice".into(), "x".into());
        }
        assert_eq!(c.len(), MAX_MESSAGES);
        assert!(c.get(1).is_none());
        assert!(c.get(MAX_MESSAGES as u64 + 1).is_some());
    }
}
