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

    /// Waits for an item. Only one consumer may wait at a time.
    pub(crate) async fn pop(&self) -> Outbound {
        loop {
            {
                let mut state = self.state.lock();
                if let Some(item) = state.items.pop_front() {
                    return item;
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
