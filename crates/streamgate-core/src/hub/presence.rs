//! The hub's side of presence: which local sessions make each user present in a room, whether
//! the user is online or away, who is typing, and the batching of diffs.
//!
//! Locks: a room's presence lives under its room lock (`RoomState::presence`). Its typists live
//! under a lock of their own (`Room::typing`), taken *before* the room lock when both are
//! needed, because a typing change publishes (which takes the room lock) while it still holds
//! the typists: a start and a stop of one user can then never reach members in the wrong order.
//! `Tracking`'s sets are leaves: nothing is locked while one of their shards is held.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dashmap::DashSet;
use streamgate_protocol::{
    Command, ErrorBody, ErrorCode, Payload, PresenceDiff, PresenceEntry, PresenceSnapshot,
    PresenceState, RoomId, ServerFrame, WireFormat,
};

use super::{Hub, Member, Room, RoomState, err};
use crate::{
    Action, OutFrame, Principal, Publish, SessionId, presence::wall_ms, session::SessionShared,
};

/// Hub-wide presence bookkeeping: the clock of activity and typing, and the rooms the periodic
/// task has to visit (so it never walks every room).
pub(super) struct Tracking {
    clock: tokio::time::Instant,
    /// Rooms with a diff waiting for the next flush.
    dirty: DashSet<RoomId>,
    /// Rooms with someone typing.
    typing_rooms: DashSet<RoomId>,
    /// When sessions were last checked for inactivity (ms on `clock`).
    away_checked: AtomicU64,
}

impl Tracking {
    pub(super) fn new() -> Self {
        Self {
            clock: tokio::time::Instant::now(),
            dirty: DashSet::new(),
            typing_rooms: DashSet::new(),
            away_checked: AtomicU64::new(0),
        }
    }

    /// Milliseconds since the hub was built, on Tokio's clock (which tests can pause).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One room's presence, under the room lock.
#[derive(Default)]
pub(super) struct RoomPresence {
    /// Each user with sessions in the room on this node, and the state they give.
    local: HashMap<String, Local>,
    /// Presence as this node announced it: users the store reported present through this node.
    announced: HashMap<String, PresenceState>,
    /// Users whose announced presence changed since the last flush, with what it was then
    /// (`None`: absent). Comparing with `announced` at flush time cancels out a join and a
    /// leave (or away and back) within one window.
    pending: HashMap<String, Option<PresenceState>>,
}

struct Local {
    sessions: Vec<SessionId>,
    state: PresenceState,
}

impl RoomPresence {
    /// Changes what is announced for `user`; `true` when the room now has a diff to flush.
    fn announce(&mut self, user: &str, now: Option<PresenceState>) -> bool {
        let before = match now {
            Some(state) => self.announced.insert(user.to_owned(), state),
            None => self.announced.remove(user),
        };
        if before == now {
            return false;
        }
        self.pending.entry(user.to_owned()).or_insert(before);
        true
    }

    /// The diff since the last flush, if anything changed; clears it.
    fn take_diff(&mut self, room: &RoomId) -> Option<PresenceDiff> {
        let mut diff = PresenceDiff {
            room: room.clone(),
            joined: Vec::new(),
            left: Vec::new(),
            updated: Vec::new(),
        };
        for (user, before) in self.pending.drain() {
            match (before, self.announced.get(&user).copied()) {
                (None, Some(state)) => diff.joined.push(PresenceEntry::new(user, state)),
                (Some(state), None) => diff.left.push(PresenceEntry::new(user, state)),
                (Some(was), Some(state)) if was != state => {
                    diff.updated.push(PresenceEntry::new(user, state));
                }
                _ => {}
            }
        }
        for list in [&mut diff.joined, &mut diff.left, &mut diff.updated] {
            list.sort_unstable_by(|a, b| a.user.cmp(&b.user));
        }
        (!diff.is_empty()).then_some(diff)
    }
}

/// A room's typists, by user (or session, for anonymous principals).
#[derive(Default)]
pub(super) struct Typists(HashMap<String, Typist>);

struct Typist {
    /// The `user` of the `typing.*` publications.
    user: Option<String>,
    /// When the server stops the typing itself (ms on the tracking clock).
    deadline_ms: u64,
}

/// Who types: the user, or the session when anonymous.
fn typist_key(principal: &Principal, session: SessionId) -> String {
    principal
        .user
        .clone()
        .unwrap_or_else(|| session.to_string())
}

/// Away when every session of the user in the room is idle.
fn user_state(members: &HashMap<SessionId, Member>, sessions: &[SessionId]) -> PresenceState {
    let idle = sessions
        .iter()
        .all(|id| members.get(id).is_none_or(|m| m.session.activity.is_idle()));
    if idle && !sessions.is_empty() {
        PresenceState::Away
    } else {
        PresenceState::Online
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Hub {
    /// The users present in `room` with their state (online or away), sorted by user; empty
    /// for rooms whose kind does not track presence. The answer of the `presence` command.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Principal, RoomPolicy, WireFormat};
    /// use streamgate_protocol::{ClientFrame, Command, Join, PresenceEntry};
    ///
    /// let config = HubConfig::default().room_kind("chat", RoomPolicy::default().presence(true));
    /// let hub = Hub::builder(config).build()?;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let room: streamgate_protocol::RoomId = "chat:1".parse()?;
    /// let (tab1, _q1) = hub.connect(Principal::user("u1"), "example", WireFormat::Json);
    /// let (tab2, _q2) = hub.connect(Principal::user("u1"), "example", WireFormat::Json);
    /// for tab in [&tab1, &tab2] {
    ///     tab.handle(ClientFrame::new(Command::Join(Join::new(room.clone())))).await;
    /// }
    /// assert_eq!(hub.presence(&room), [PresenceEntry::online("u1")]); // two tabs, one user
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn presence(&self, room: &RoomId) -> Vec<PresenceEntry> {
        let mut entries = self.inner.presence.entries(room);
        entries.sort_unstable_by(|a, b| a.user.cmp(&b.user));
        entries
    }

    /// Sends the presence diffs collected since the last flush: at most one `presence` frame
    /// per room, encoded once and queued (volatile) to the room's members. Returns how many
    /// frames went out. Runs every
    /// [`HubConfig::presence_batch_window`](crate::HubConfig::presence_batch_window) inside a
    /// Tokio runtime; callable directly.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, Principal, RoomPolicy, WireFormat};
    /// use streamgate_protocol::{ClientFrame, Command, Join, ServerFrame};
    ///
    /// // Built outside a runtime: no presence task, so this example flushes by itself.
    /// let config = HubConfig::default().room_kind("chat", RoomPolicy::default().presence(true));
    /// let hub = Hub::builder(config).build()?;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let room: streamgate_protocol::RoomId = "chat:1".parse()?;
    /// let (alice, mut queue) = hub.connect(Principal::user("alice"), "example", WireFormat::Json);
    /// let (bob, _) = hub.connect(Principal::user("bob"), "example", WireFormat::Json);
    /// for session in [&alice, &bob] {
    ///     session.handle(ClientFrame::new(Command::Join(Join::new(room.clone())))).await;
    /// }
    /// assert_eq!(hub.flush_presence(), 1); // both joins in one frame
    /// let frames: Vec<_> = std::iter::from_fn(|| queue.try_recv()).collect();
    /// let diff = frames.iter().find_map(|item| match item.frames()[0].frame() {
    ///     ServerFrame::Presence(diff) => Some(diff.clone()),
    ///     _ => None,
    /// });
    /// assert_eq!(diff.map(|d| d.joined.len()), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_presence(&self) -> usize {
        let tracking = &self.inner.tracking;
        let dirty: Vec<RoomId> = tracking.dirty.iter().map(|r| r.key().clone()).collect();
        let mut sent = 0;
        for id in dirty {
            // Removed before the room is locked: a change made meanwhile marks it again.
            tracking.dirty.remove(&id);
            let Some(room) = self.inner.rooms.get(&id).map(|r| Arc::clone(&r)) else {
                continue;
            };
            let mut state = room.state.lock();
            if state.dead {
                continue;
            }
            let Some(diff) = state.presence.take_diff(&id) else {
                continue;
            };
            let frame = OutFrame::new(ServerFrame::Presence(diff));
            for format in WireFormat::ALL {
                if state.formats[format.index()] > 0
                    && let Err(e) = frame.encode(format)
                {
                    tracing::error!(error = %e, ?format, "cannot encode a presence diff");
                }
            }
            state.broadcast_volatile(&frame);
            sent += 1;
        }
        sent
    }

    /// Marks users whose sessions in a room have all been inactive for
    /// [`HubConfig::presence_away_after`](crate::HubConfig::presence_away_after) as away, ends
    /// typing that was neither renewed nor stopped within
    /// [`HubConfig::typing_timeout`](crate::HubConfig::typing_timeout), then flushes the
    /// presence diffs ([`Hub::flush_presence`]). Runs every batch window inside a Tokio
    /// runtime; callable directly.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig};
    ///
    /// // Built outside a Tokio runtime, the hub runs no task: drive presence yourself.
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// hub.check_presence();
    /// # Ok::<(), streamgate_core::ConfigError>(())
    /// ```
    pub fn check_presence(&self) {
        let tracking = &self.inner.tracking;
        let config = &self.inner.config;
        let now = tracking.now_ms();
        let away_after = millis(config.presence_away_after);
        // Inactivity changes slowly: looking more often than a quarter of the delay (and than
        // once a second) buys nothing.
        let every = (away_after / 4).clamp(millis(config.presence_batch_window), 1000);
        let last = tracking.away_checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every
            && tracking
                .away_checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.mark_idle(now.saturating_sub(away_after));
        }
        self.expire_typing(now);
        self.flush_presence();
    }

    /// Records a command of `session` as activity, unless it is traffic a client sends on its
    /// own (`ping`, `ack`, `refresh`, `presence`); a session counted idle becomes active again
    /// and its user online in its rooms.
    pub(crate) fn activity(&self, session: &SessionShared, command: &Command) {
        if matches!(
            command,
            Command::Ping(_) | Command::Ack(_) | Command::Refresh(_) | Command::Presence(_)
        ) {
            return;
        }
        if session.activity.touch(self.inner.tracking.now_ms()) {
            self.restate(session);
        }
    }

    fn mark_idle(&self, cutoff_ms: u64) {
        let idle: Vec<Arc<SessionShared>> = self
            .inner
            .sessions
            .iter()
            .filter(|s| s.activity.idle_since(cutoff_ms))
            .map(|s| Arc::clone(&s))
            .collect();
        for session in idle {
            self.restate(&session);
        }
    }

    /// Recomputes the state of `session`'s user in each of its presence rooms.
    fn restate(&self, session: &SessionShared) {
        let Some(user) = session.principal().user.clone() else {
            return;
        };
        let rooms: Vec<RoomId> = session.rooms.lock().iter().cloned().collect();
        for id in rooms {
            let Some(room) = self.inner.rooms.get(&id).map(|r| Arc::clone(&r)) else {
                continue;
            };
            if !room.policy.presence {
                continue;
            }
            let mut state = room.state.lock();
            let RoomState {
                members, presence, ..
            } = &mut *state;
            let Some(local) = presence.local.get_mut(&user) else {
                continue;
            };
            let now = user_state(members, &local.sessions);
            if now == local.state {
                continue;
            }
            local.state = now;
            self.inner.presence.set_state(&id, &user, now);
            if presence.announced.contains_key(&user) && presence.announce(&user, Some(now)) {
                self.inner.tracking.dirty.insert(id.clone());
            }
        }
    }

    /// A new member `session` of `user` in a presence room; under the room lock, after the
    /// membership was added.
    pub(super) fn presence_joined(
        &self,
        id: &RoomId,
        state: &mut RoomState,
        user: &str,
        session: SessionId,
    ) {
        let RoomState {
            members, presence, ..
        } = state;
        let local = presence.local.entry(user.to_owned()).or_insert(Local {
            sessions: Vec::new(),
            state: PresenceState::Online,
        });
        local.sessions.push(session);
        let before = local.state;
        local.state = user_state(members, &local.sessions);
        let now = local.state;
        let store = &self.inner.presence;
        let changed = if store.add(id, user) {
            store.set_state(id, user, now);
            presence.announce(user, Some(now))
        } else if now != before {
            store.set_state(id, user, now);
            presence.announced.contains_key(user) && presence.announce(user, Some(now))
        } else {
            false
        };
        if changed {
            self.inner.tracking.dirty.insert(id.clone());
        }
    }

    /// After `session` left `room` (its membership already removed, room lock held): updates
    /// the user's presence. Returns the typist to stop when that was the last session of its
    /// user in the room.
    pub(super) fn presence_left(
        &self,
        id: &RoomId,
        room: &Room,
        state: &mut RoomState,
        session: &SessionShared,
    ) -> Option<String> {
        let principal = session.principal();
        let key = typist_key(&principal, session.id);
        let typing = self.inner.tracking.typing_rooms.contains(id);
        let (Some(user), true) = (&principal.user, room.policy.presence) else {
            // No presence bookkeeping here: only a typist needs to know about its last session
            // (the scan runs only while someone types in the room).
            if !typing {
                return None;
            }
            let last = principal.user.as_ref().is_none_or(|user| {
                !state
                    .members
                    .values()
                    .any(|m| m.session.principal().user.as_ref() == Some(user))
            });
            return last.then_some(key);
        };
        let RoomState {
            members, presence, ..
        } = state;
        let store = &self.inner.presence;
        let mut changed = false;
        let last = match presence.local.get_mut(user) {
            Some(local) => {
                local.sessions.retain(|s| *s != session.id);
                if local.sessions.is_empty() {
                    presence.local.remove(user);
                    true
                } else {
                    let now = user_state(members, &local.sessions);
                    if now != local.state {
                        local.state = now;
                        store.set_state(id, user, now);
                        changed = presence.announced.contains_key(user.as_str())
                            && presence.announce(user, Some(now));
                    }
                    false
                }
            }
            None => true,
        };
        if store.remove(id, user) {
            changed |= presence.announce(user, None);
        }
        if changed {
            self.inner.tracking.dirty.insert(id.clone());
        }
        (typing && last).then_some(key)
    }

    /// The `presence` command: the room's snapshot, for members only.
    pub(crate) fn presence_query(
        &self,
        session: &SessionShared,
        room: &RoomId,
    ) -> Result<Payload, ErrorBody> {
        let principal = session.principal();
        self.inner
            .authorizer
            .authorize(&principal, Action::Join(room))
            .map_err(|code| err(code, "you may not be in this room"))?;
        self.require_member(session, room)?;
        let snapshot = PresenceSnapshot {
            room: room.clone(),
            users: self.presence(room),
            typing: self.typing_users(room),
        };
        Payload::json(&snapshot).map_err(|_| err(ErrorCode::Internal, "internal error"))
    }

    fn typing_users(&self, id: &RoomId) -> Vec<String> {
        let Some(room) = self.inner.rooms.get(id).map(|r| Arc::clone(&r)) else {
            return Vec::new();
        };
        let mut users: Vec<String> = room
            .typing
            .lock()
            .0
            .values()
            .filter_map(|t| t.user.clone())
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// `typing_start` / `typing_stop`: a volatile `typing.start` / `typing.stop` to the room's
    /// members when the user's typing begins or ends; a repeated start only renews it.
    pub(crate) fn typing(
        &self,
        session: &SessionShared,
        id: &RoomId,
        active: bool,
    ) -> Result<(), ErrorBody> {
        let principal = session.principal();
        self.inner
            .authorizer
            .authorize(&principal, Action::Publish(id))
            .map_err(|code| err(code, "you may not publish to this room"))?;
        self.require_member(session, id)?;
        let key = typist_key(&principal, session.id);
        let room = self.room(id);
        let mut typists = room.typing.lock();
        let event = if active {
            let deadline_ms =
                self.inner.tracking.now_ms() + millis(self.inner.config.typing_timeout);
            let typist = Typist {
                user: principal.user.clone(),
                deadline_ms,
            };
            if typists.0.insert(key, typist).is_some() {
                return Ok(());
            }
            self.inner.tracking.typing_rooms.insert(id.clone());
            "typing.start"
        } else {
            if typists.0.remove(&key).is_none() {
                return Ok(());
            }
            if typists.0.is_empty() {
                self.inner.tracking.typing_rooms.remove(id);
            }
            "typing.stop"
        };
        // Published with the typists still locked: see the module's notes on locks.
        self.publish_typing(id, event, principal.user.as_deref())
            .map_err(|e| err(e.code(), "cannot publish now"))
    }

    /// Ends the typing of `key` in `room`, if any (its user's last session left).
    pub(super) fn stop_typing(&self, id: &RoomId, room: &Room, key: &str) {
        let mut typists = room.typing.lock();
        let Some(typist) = typists.0.remove(key) else {
            return;
        };
        if typists.0.is_empty() {
            self.inner.tracking.typing_rooms.remove(id);
        }
        // Members may be gone, or the hub shutting down: nobody is left to tell.
        let _ = self.publish_typing(id, "typing.stop", typist.user.as_deref());
    }

    fn expire_typing(&self, now_ms: u64) {
        let tracking = &self.inner.tracking;
        let rooms: Vec<RoomId> = tracking
            .typing_rooms
            .iter()
            .map(|r| r.key().clone())
            .collect();
        for id in rooms {
            let Some(room) = self.inner.rooms.get(&id).map(|r| Arc::clone(&r)) else {
                tracking.typing_rooms.remove(&id);
                continue;
            };
            let mut typists = room.typing.lock();
            let expired: Vec<String> = typists
                .0
                .iter()
                .filter(|(_, t)| t.deadline_ms <= now_ms)
                .map(|(key, _)| key.clone())
                .collect();
            for key in expired {
                if let Some(typist) = typists.0.remove(&key) {
                    let _ = self.publish_typing(&id, "typing.stop", typist.user.as_deref());
                }
            }
            if typists.0.is_empty() {
                tracking.typing_rooms.remove(&id);
            }
        }
    }

    fn publish_typing(
        &self,
        id: &RoomId,
        event: &str,
        user: Option<&str>,
    ) -> Result<(), crate::PublishError> {
        let data = Payload::json(&serde_json::json!({ "user": user }))?;
        self.publish(id, Publish::new(event, data).volatile())
            .map(|_| ())
    }

    /// Refreshes the store's entries of users with sessions here, lets the store drop stale
    /// ones, and announces those that were present in a local room as gone.
    pub(super) fn sweep_presence(&self) {
        let inner = &self.inner;
        let now = wall_ms();
        let rooms: Vec<(RoomId, Arc<Room>)> = inner
            .rooms
            .iter()
            .filter(|r| r.policy.presence)
            .map(|r| (r.key().clone(), Arc::clone(r.value())))
            .collect();
        for (id, room) in &rooms {
            let users: Vec<String> = room.state.lock().presence.local.keys().cloned().collect();
            if !users.is_empty() {
                inner.presence.refresh(id, &users, now);
            }
        }
        for (id, user) in inner.presence.sweep(now, inner.config.presence_ttl) {
            let Some(room) = inner.rooms.get(&id).map(|r| Arc::clone(&r)) else {
                continue;
            };
            let mut state = room.state.lock();
            if state.presence.local.contains_key(&user) {
                tracing::warn!(room = %id, "presence store expired a user with local sessions");
            } else if state.presence.announce(&user, None) {
                inner.tracking.dirty.insert(id.clone());
            }
        }
    }
}
