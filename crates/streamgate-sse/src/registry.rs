//! The live SSE sessions of one router, so the commands endpoint can reach them by id.

use std::{collections::HashSet, sync::Arc};

use dashmap::DashMap;
use parking_lot::Mutex;
use streamgate_core::{SessionHandle, SessionId};
use streamgate_protocol::RoomId;

/// Session id → live session. An entry lives exactly as long as its event stream.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: DashMap<SessionId, Arc<Live>>,
}

/// One live SSE session.
pub(crate) struct Live {
    /// The hub session. The registry entry (and a command being handled) hold the only
    /// references, so the handle drops, leaving every room, once the stream has ended and no
    /// command is running.
    pub(crate) session: SessionHandle,
    /// Commands of one session run one at a time, in the order they arrive, as they do on the
    /// WebSocket transport's reader loop.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Rooms this connection has joined or is joining (its claims against `max_rooms`); a
    /// `leave` gives the room back. A join the hub refuses keeps its claim until a `leave`.
    rooms: Mutex<HashSet<RoomId>>,
}

impl Live {
    pub(crate) fn new(session: SessionHandle, rooms: impl IntoIterator<Item = RoomId>) -> Self {
        Self {
            session,
            turn: tokio::sync::Mutex::new(()),
            rooms: Mutex::new(rooms.into_iter().collect()),
        }
    }

    /// Claims `room` for a join; `false` when that would exceed `max` rooms.
    pub(crate) fn claim(&self, room: &RoomId, max: usize) -> bool {
        let mut rooms = self.rooms.lock();
        if rooms.contains(room) {
            return true;
        }
        if rooms.len() >= max {
            return false;
        }
        rooms.insert(room.clone());
        true
    }

    /// Gives back a left room's claim.
    pub(crate) fn release(&self, room: &RoomId) {
        self.rooms.lock().remove(room);
    }
}

impl Registry {
    /// Registers a session until the returned guard drops.
    pub(crate) fn insert(self: &Arc<Self>, live: Live) -> Registration {
        let id = live.session.id();
        self.sessions.insert(id, Arc::new(live));
        Registration {
            registry: Arc::clone(self),
            id,
        }
    }

    /// The live session with this id.
    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<Live>> {
        self.sessions.get(&id).map(|entry| Arc::clone(&entry))
    }
}

/// Keeps a session registered; owned by its event stream, so the session is unregistered (and
/// its handle dropped) when the stream ends or the client goes away.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: SessionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use streamgate_core::{Hub, HubConfig, Principal, WireFormat};

    use super::*;

    fn room(id: &str) -> RoomId {
        id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    #[test]
    fn a_session_lives_as_long_as_its_registration() -> Result<(), Box<dyn std::error::Error>> {
        let hub = Hub::builder(HubConfig::default()).build()?;
        let registry = Arc::new(Registry::default());
        let (session, _queue) = hub.connect(Principal::user("u1"), "sse", WireFormat::Json);
        let id = session.id();
        let registration = registry.insert(Live::new(session, [room("r:a")]));
        let live = registry.get(id).ok_or("registered")?;
        assert!(live.claim(&room("r:a"), 2));
        assert!(live.claim(&room("r:b"), 2));
        assert!(!live.claim(&room("r:c"), 2));
        live.release(&room("r:a"));
        assert!(live.claim(&room("r:c"), 2));

        drop(registration);
        assert!(registry.get(id).is_none());
        // A command still running keeps the session until it finishes.
        assert_eq!(hub.stats().sessions, 1);
        drop(live);
        assert_eq!(hub.stats().sessions, 0);
        Ok(())
    }
}
