//! The per-session outbound queue: bounded, never blocks the producer, wakes one consumer.
//!
//! A mutex around a ring buffer beats a lock-free channel here: fan-out touches one lock word
//! and one slot per recipient, and a notification is only sent when the consumer is parked,
//! so a burst to thousands of idle queues costs no wake-ups.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::Outbound;

struct State {
    items: VecDeque<Outbound>,
    parked: bool,
    closed: bool,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    notify: Notify,
}

/// The queue is at capacity; the item was not queued.
pub(crate) struct Full;

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                parked: false,
                closed: false,
            }),
            capacity,
            notify: Notify::new(),
        }
    }

    pub(crate) fn push(&self, item: Outbound) -> Result<(), Full> {
        let mut state = self.state.lock();
        if state.items.len() >= self.capacity {
            return Err(Full);
        }
        state.items.push_back(item);
        let wake = std::mem::take(&mut state.parked);
        drop(state);
        if wake {
            self.notify.notify_one();
        }
        Ok(())
    }

    pub(crate) fn try_pop(&self) -> Option<Outbound> {
        self.state.lock().items.pop_front()
    }

    /// Closes the queue: a waiting [`pop`](Queue::pop) returns `None`, and every later one.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_one();
    }

    /// Waits for an item; `None` once the queue is closed. Only one consumer may wait at a
    /// time.
    pub(crate) async fn pop(&self) -> Option<Outbound> {
        loop {
            {
                let mut state = self.state.lock();
                if state.closed {
                    return None;
                }
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                state.parked = true;
            }
            // `notify_one` stores a permit if it runs before we wait, so no wake-up is lost.
            self.notify.notified().await;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }
}
