//! Offline queues: a publication targeted at a user who has no session in its room waits in
//! that user's bounded queue (count and age) and is delivered, in order, when a session of the
//! user next joins the room.
//!
//! Queues are keyed by user id; a frame is only handed to a session that joined the frame's
//! room, and a join is authorized, so a tenant's queued frames never reach another tenant's
//! user of the same id.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use streamgate_protocol::RoomId;

use crate::OutFrame;

/// What happened to a publication for an offline user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// Queued, and the user's oldest frame was dropped to make room.
    Displaced,
    /// Offline queues are off, or too many users have one.
    Refused,
}

struct Queued {
    room: RoomId,
    at: Instant,
    frame: Arc<OutFrame>,
}

/// The offline queues of all users.
pub(crate) struct OfflineQueues {
    users: DashMap<String, VecDeque<Queued>>,
    /// Users with a queue; bounded by `max_users`.
    count: AtomicUsize,
    capacity: usize,
    ttl: Duration,
    max_users: usize,
}

impl OfflineQueues {
    pub(crate) fn new(capacity: usize, ttl: Duration, max_users: usize) -> Self {
        Self {
            users: DashMap::new(),
            count: AtomicUsize::new(0),
            capacity,
            ttl,
            max_users,
        }
    }

    /// Queues `frame` of `room` for `user`.
    pub(crate) fn push(&self, user: &str, room: &RoomId, frame: &Arc<OutFrame>) -> Enqueued {
        if self.capacity == 0 {
            return Enqueued::Refused;
        }
        let item = Queued {
            room: room.clone(),
            at: Instant::now(),
            frame: Arc::clone(frame),
        };
        if let Some(mut queue) = self.users.get_mut(user) {
            let displaced = queue.len() >= self.capacity;
            if displaced {
                queue.pop_front();
            }
            queue.push_back(item);
            return if displaced {
                Enqueued::Displaced
            } else {
                Enqueued::Queued
            };
        }
        // A new user's queue: reserve a slot under the global bound first.
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_users).then_some(n + 1)
            })
            .is_err()
        {
            return Enqueued::Refused;
        }
        let mut created = true;
        self.users
            .entry(user.to_owned())
            .and_modify(|queue| {
                // Another publisher created it meanwhile: give the slot back.
                created = false;
                if queue.len() >= self.capacity {
                    queue.pop_front();
                }
                queue.push_back(Queued {
                    room: item.room.clone(),
                    at: item.at,
                    frame: Arc::clone(&item.frame),
                });
            })
            .or_insert_with(|| VecDeque::from([item]));
        if !created {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        Enqueued::Queued
    }

    /// Takes `user`'s unexpired frames of `room`, oldest first; frames of other rooms stay.
    pub(crate) fn take(&self, user: &str, room: &RoomId) -> Vec<Arc<OutFrame>> {
        let Some(mut queue) = self.users.get_mut(user) else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut taken = Vec::new();
        queue.retain(|q| {
            if now.duration_since(q.at) >= self.ttl {
                return false;
            }
            if &q.room == room {
                taken.push(Arc::clone(&q.frame));
                return false;
            }
            true
        });
        let empty = queue.is_empty();
        drop(queue);
        if empty {
            self.remove_if_empty(user);
        }
        taken
    }

    fn remove_if_empty(&self, user: &str) {
        if self.users.remove_if(user, |_, q| q.is_empty()).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drops expired frames and empty queues.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut removed = 0;
        self.users.retain(|_, queue| {
            queue.retain(|q| now.duration_since(q.at) < self.ttl);
            let keep = !queue.is_empty();
            if !keep {
                removed += 1;
            }
            keep
        });
        self.count.fetch_sub(removed, Ordering::AcqRel);
    }

    /// Frames waiting in all queues.
    pub(crate) fn len(&self) -> usize {
        self.users.iter().map(|q| q.len()).sum()
    }

    /// Users with a queue.
    pub(crate) fn users(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)] // Tests fail loudly on purpose.

    use streamgate_protocol::{Payload, Priority, Publication, ServerFrame};

    use super::*;

    fn frame(room: &RoomId, n: u64) -> Arc<OutFrame> {
        OutFrame::new(ServerFrame::Publication(Publication {
            room: room.clone(),
            offset: 0,
            epoch: 1,
            id: format!("l{n}"),
            event: "notice".into(),
            data: Payload::null(),
            ts: 0,
            priority: Priority::Normal,
            ack: false,
        }))
    }

    fn ids(frames: &[Arc<OutFrame>]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| f.publication().map(|p| p.id.clone()))
            .collect()
    }

    #[test]
    fn keeps_order_capacity_and_rooms_apart() {
        let queues = OfflineQueues::new(3, Duration::from_secs(60), 10);
        let a: RoomId = "conversation:a".parse().expect("room");
        let b: RoomId = "conversation:b".parse().expect("room");
        assert_eq!(queues.push("u1", &a, &frame(&a, 1)), Enqueued::Queued);
        assert_eq!(queues.push("u1", &b, &frame(&b, 2)), Enqueued::Queued);
        assert_eq!(queues.push("u1", &a, &frame(&a, 3)), Enqueued::Queued);
        assert_eq!(queues.push("u1", &a, &frame(&a, 4)), Enqueued::Displaced);
        assert_eq!(ids(&queues.take("u1", &a)), ["l3", "l4"]);
        assert_eq!(queues.users(), 1);
        assert_eq!(ids(&queues.take("u1", &b)), ["l2"]);
        assert_eq!((queues.users(), queues.len()), (0, 0));
        assert!(queues.take("u2", &a).is_empty());
    }

    #[test]
    fn bounds_users_and_expires() {
        let queues = OfflineQueues::new(3, Duration::ZERO, 2);
        let a: RoomId = "conversation:a".parse().expect("room");
        assert_eq!(queues.push("u1", &a, &frame(&a, 1)), Enqueued::Queued);
        assert_eq!(queues.push("u2", &a, &frame(&a, 2)), Enqueued::Queued);
        assert_eq!(queues.push("u3", &a, &frame(&a, 3)), Enqueued::Refused);
        // A zero TTL expires everything at once.
        assert!(queues.take("u1", &a).is_empty());
        queues.sweep();
        assert_eq!((queues.users(), queues.len()), (0, 0));
        assert_eq!(queues.push("u3", &a, &frame(&a, 3)), Enqueued::Queued);
        let off = OfflineQueues::new(0, Duration::from_secs(1), 2);
        assert_eq!(off.push("u1", &a, &frame(&a, 1)), Enqueued::Refused);
    }
}
