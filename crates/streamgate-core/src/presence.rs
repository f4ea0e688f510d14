use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use streamgate_protocol::{PresenceEntry, PresenceState, RoomId};

/// Who is present in which room, counted per user: several sessions of one user count once.
/// A networked implementation shares this state between nodes.
///
/// The hub calls it under the room's lock, so it must answer from memory (a networked store
/// keeps a local cache and synchronises in the background). Only `add`, `remove` and `users`
/// are required; the other methods have defaults that are right for a store without states or
/// expiry.
///
/// ```
/// use std::{collections::HashMap, sync::Mutex};
/// use streamgate_core::PresenceStore;
/// use streamgate_protocol::RoomId;
///
/// /// Counts sessions; every present user is `online`, nothing expires.
/// #[derive(Default)]
/// struct Counting(Mutex<HashMap<(RoomId, String), usize>>);
///
/// impl PresenceStore for Counting {
///     fn add(&self, room: &RoomId, user: &str) -> bool {
///         let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
///         let n = map.entry((room.clone(), user.to_owned())).or_default();
///         *n += 1;
///         *n == 1
///     }
///     fn remove(&self, room: &RoomId, user: &str) -> bool {
///         let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
///         let key = (room.clone(), user.to_owned());
///         let Some(n) = map.get_mut(&key) else { return false };
///         *n -= 1;
///         (*n == 0).then(|| map.remove(&key)).is_some()
///     }
///     fn users(&self, room: &RoomId) -> Vec<String> {
///         let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
///         map.keys().filter(|(r, _)| r == room).map(|(_, u)| u.clone()).collect()
///     }
/// }
///
/// let store = Counting::default();
/// let room = "conversation:1".parse()?;
/// assert!(store.add(&room, "u1"));
/// assert_eq!(store.entries(&room)[0].user, "u1"); // the default: everyone online
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
pub trait PresenceStore: Send + Sync + 'static {
    /// Records one more session of `user` in `room`; `true` when the user was not present.
    fn add(&self, room: &RoomId, user: &str) -> bool;
    /// Records one session of `user` leaving `room`; `true` when it was the user's last.
    fn remove(&self, room: &RoomId, user: &str) -> bool;
    /// The users present in `room`.
    fn users(&self, room: &RoomId) -> Vec<String>;

    /// Records the state of a present user (the hub computes it from its sessions' activity).
    /// The default ignores it.
    fn set_state(&self, room: &RoomId, user: &str, state: PresenceState) {
        let _ = (room, user, state);
    }

    /// The users present in `room` with their states. The default reports
    /// [`users`](PresenceStore::users), all online.
    fn entries(&self, room: &RoomId) -> Vec<PresenceEntry> {
        self.users(room)
            .into_iter()
            .map(PresenceEntry::online)
            .collect()
    }

    /// Marks the entries of `users` in `room` as seen at `now_ms` (Unix milliseconds): the hub
    /// still holds sessions for them. The hub refreshes its entries before every
    /// [`sweep`](PresenceStore::sweep). The default does nothing.
    fn refresh(&self, room: &RoomId, users: &[String], now_ms: u64) {
        let _ = (room, users, now_ms);
    }

    /// Drops the entries not added or refreshed within `ttl` before `now_ms` (Unix
    /// milliseconds) and returns them as `(room, user)`. They matter for shared stores: the
    /// entries of a node that died are never removed otherwise. Called by
    /// [`Hub::sweep`](crate::Hub::sweep); the default drops nothing.
    fn sweep(&self, now_ms: u64, ttl: Duration) -> Vec<(RoomId, String)> {
        let _ = (now_ms, ttl);
        Vec::new()
    }
}

/// One user's presence in one room of a [`MemoryPresence`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    sessions: usize,
    state: PresenceState,
    seen_ms: u64,
}

/// In-process presence: sessions counted per user, states, and last-seen times for expiry.
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::{MemoryPresence, PresenceStore};
/// use streamgate_protocol::{PresenceEntry, PresenceState};
///
/// let p = MemoryPresence::default();
/// let room = "conversation:1".parse()?;
/// assert!(p.add(&room, "u1"));
/// assert!(!p.add(&room, "u1")); // a second tab
/// p.set_state(&room, "u1", PresenceState::Away);
/// assert_eq!(p.entries(&room), [PresenceEntry::new("u1", PresenceState::Away)]);
/// assert!(!p.remove(&room, "u1"));
/// assert!(p.remove(&room, "u1"));
/// assert!(p.users(&room).is_empty());
///
/// // Entries nobody refreshed expire.
/// p.add(&room, "u2");
/// p.refresh(&room, &["u2".into()], 1_000);
/// assert!(p.sweep(2_000, Duration::from_secs(5)).is_empty());
/// assert_eq!(p.sweep(7_000, Duration::from_secs(5)), [(room.clone(), "u2".into())]);
/// assert!(p.users(&room).is_empty());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryPresence {
    rooms: DashMap<RoomId, HashMap<String, Entry>>,
}

impl PresenceStore for MemoryPresence {
    fn add(&self, room: &RoomId, user: &str) -> bool {
        let mut users = self.rooms.entry(room.clone()).or_default();
        let entry = users.entry(user.to_owned()).or_insert(Entry {
            sessions: 0,
            state: PresenceState::Online,
            seen_ms: 0,
        });
        entry.sessions += 1;
        entry.seen_ms = wall_ms();
        entry.sessions == 1
    }

    fn remove(&self, room: &RoomId, user: &str) -> bool {
        let gone = {
            let Some(mut users) = self.rooms.get_mut(room) else {
                return false;
            };
            let Some(entry) = users.get_mut(user) else {
                return false;
            };
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.sessions == 0 {
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

    fn set_state(&self, room: &RoomId, user: &str, state: PresenceState) {
        if let Some(mut users) = self.rooms.get_mut(room)
            && let Some(entry) = users.get_mut(user)
        {
            entry.state = state;
        }
    }

    fn entries(&self, room: &RoomId) -> Vec<PresenceEntry> {
        self.rooms
            .get(room)
            .map(|users| {
                users
                    .iter()
                    .map(|(user, e)| PresenceEntry::new(user.clone(), e.state))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn refresh(&self, room: &RoomId, users: &[String], now_ms: u64) {
        if let Some(mut entries) = self.rooms.get_mut(room) {
            for user in users {
                if let Some(entry) = entries.get_mut(user) {
                    entry.seen_ms = now_ms;
                }
            }
        }
    }

    fn sweep(&self, now_ms: u64, ttl: Duration) -> Vec<(RoomId, String)> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(ttl_ms);
        let mut expired = Vec::new();
        self.rooms.retain(|room, users| {
            users.retain(|user, entry| {
                let keep = entry.seen_ms >= cutoff;
                if !keep {
                    expired.push((room.clone(), user.clone()));
                }
                keep
            });
            !users.is_empty()
        });
        expired
    }
}

/// Unix time in milliseconds, the clock of [`PresenceStore`] last-seen times (shared between
/// nodes, so wall time rather than a monotonic clock).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a session last did something a person does (see `Hub::activity`), and whether the
/// hub has counted it idle since. Lives in the session's shared state.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Milliseconds on the hub's presence clock.
    last_ms: AtomicU64,
    idle: AtomicBool,
}

impl Activity {
    /// Records activity at `now_ms`; `true` when the session was counted idle until now.
    pub(crate) fn touch(&self, now_ms: u64) -> bool {
        self.last_ms.fetch_max(now_ms, Ordering::SeqCst);
        self.idle.swap(false, Ordering::SeqCst)
    }

    /// Counts the session idle when it did nothing since `cutoff_ms`; `true` when the flag was
    /// set (the caller then recomputes the user's state in the session's rooms).
    pub(crate) fn idle_since(&self, cutoff_ms: u64) -> bool {
        if self.last_ms.load(Ordering::SeqCst) >= cutoff_ms
            || self.idle.swap(true, Ordering::SeqCst)
        {
            return false;
        }
        // Activity between the load and the swap must win; either this second load sees it, or
        // its `touch` sees the flag set and recomputes itself.
        if self.last_ms.load(Ordering::SeqCst) >= cutoff_ms {
            self.idle.store(false, Ordering::SeqCst);
        }
        true
    }

    /// Whether the session is counted idle.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }
}
