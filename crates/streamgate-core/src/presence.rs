use std::collections::HashMap;

use dashmap::DashMap;
use streamgate_protocol::RoomId;

/// Who is present in which room, counted per user: several sessions of one user count once.
/// A networked implementation shares this state between nodes.
pub trait PresenceStore: Send + Sync + 'static {
    /// Records one more session of `user` in `room`; `true` when the user was not present.
    fn add(&self, room: &RoomId, user: &str) -> bool;
    /// Records one session of `user` leaving `room`; `true` when it was the user's last.
    fn remove(&self, room: &RoomId, user: &str) -> bool;
    /// The users present in `room`.
    fn users(&self, room: &RoomId) -> Vec<String>;
}

/// In-process presence.
///
/// ```
/// use streamgate_core::{MemoryPresence, PresenceStore};
///
/// let p = MemoryPresence::default();
/// let room = "conversation:1".parse()?;
/// assert!(p.add(&room, "u1"));
/// assert!(!p.add(&room, "u1")); // a second tab
/// assert!(!p.remove(&room, "u1"));
/// assert!(p.remove(&room, "u1"));
/// assert!(p.users(&room).is_empty());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryPresence {
    rooms: DashMap<RoomId, HashMap<String, usize>>,
}

impl PresenceStore for MemoryPresence {
    fn add(&self, room: &RoomId, user: &str) -> bool {
        let mut users = self.rooms.entry(room.clone()).or_default();
        let count = users.entry(user.to_owned()).or_default();
        *count += 1;
        *count == 1
    }

    fn remove(&self, room: &RoomId, user: &str) -> bool {
        let gone = {
            let Some(mut users) = self.rooms.get_mut(room) else {
                return false;
            };
            let Some(count) = users.get_mut(user) else {
                return false;
            };
            *count -= 1;
            if *count == 0 {
                users.remove(user);
                true
            } else {
                false
            }
        };
        self.rooms.remove_if(room, |_, users| users.is_empty());
        gone
    }

    fn users(&self, room: &RoomId) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }
}
