//! What the clients count: deliveries, latency, duplicates and gaps per subscriber, errors and
//! refusals, and the completion of closed-loop publications. Single-threaded: `Cell`s.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;

use crate::client::Handler;

/// How many error messages are kept as samples.
const ERROR_SAMPLES: usize = 8;
/// Highest latency recorded, µs (an hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in µs, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // Bounds are constants that `new_with_bounds` accepts; fall back to an auto-resizing one.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid"));
        h.auto(true);
        h
    })
}

/// Percentiles of a histogram.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// 99.9th percentile.
    pub(crate) p999: u64,
    /// Largest.
    pub(crate) max: u64,
    /// Mean.
    pub(crate) mean: f64,
    /// How many values.
    pub(crate) samples: u64,
}

impl Latency {
    /// The percentiles of `h`, `None` when it is empty.
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
            samples: h.len(),
        })
    }
}

/// Which publications of one room a subscriber has seen: everything up to `base`, plus a
/// 64-publication window above it (publishers may interleave, so seqs can arrive out of order).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Track {
    base: u64,
    window: u64,
    /// Distinct publications received.
    pub(crate) distinct: u64,
}

impl Track {
    /// Records `seq`; `false` when it was seen before (a duplicate).
    pub(crate) fn record(&mut self, seq: u64) -> bool {
        if seq <= self.base {
            return false;
        }
        let mut offset = seq - self.base;
        if offset > 64 {
            // Slide: what falls out unseen is missing, counted at the end from `distinct`.
            let shift = offset - 64;
            self.base += shift;
            self.window = if shift >= 64 { 0 } else { self.window >> shift };
            offset = 64;
        }
        let bit = 1u64 << (offset - 1);
        if self.window & bit != 0 {
            return false;
        }
        self.window |= bit;
        self.distinct += 1;
        while self.window & 1 != 0 {
            self.window >>= 1;
            self.base += 1;
        }
        true
    }
}

/// One subscriber connection's state, shared between its task and the scenario.
#[derive(Debug, Default)]
pub(crate) struct Sub {
    /// The room it joined (index).
    pub(crate) room: usize,
    /// What it received.
    pub(crate) track: Cell<Track>,
    /// Whether it connected (and joined).
    pub(crate) joined: Cell<bool>,
    /// Whether it connected and is still open.
    pub(crate) alive: Cell<bool>,
}

/// Per room: publications sent and refused.
#[derive(Debug, Default)]
pub(crate) struct RoomCount {
    /// Publications sent (the last seq).
    pub(crate) published: Cell<u64>,
    /// Publications the server refused (error answers).
    pub(crate) failed: Cell<u64>,
}

impl RoomCount {
    /// The next seq of this room.
    pub(crate) fn next_seq(&self) -> u64 {
        let seq = self.published.get() + 1;
        self.published.set(seq);
        seq
    }

    /// How many publications each member should receive.
    pub(crate) fn expected(&self) -> u64 {
        self.published.get().saturating_sub(self.failed.get())
    }
}

/// Closed-loop bookkeeping: how many members still have to receive each outstanding
/// publication of the one room.
#[derive(Debug)]
pub(crate) struct Completion {
    ring: RefCell<Vec<(u64, u32)>>,
    /// Publications every member received (or given up on).
    pub(crate) completed: Cell<u64>,
    /// Wakes the publisher when one completes.
    pub(crate) notify: Notify,
}

impl Completion {
    /// Room for this many outstanding publications.
    pub(crate) const CAPACITY: usize = 1024;

    /// Empty.
    pub(crate) fn new() -> Self {
        Self {
            ring: RefCell::new(vec![(0, 0); Self::CAPACITY]),
            completed: Cell::new(0),
            notify: Notify::new(),
        }
    }

    /// Publication `seq` was sent and `members` must receive it.
    pub(crate) fn expect(&self, seq: u64, members: u32) {
        self.ring.borrow_mut()[slot(seq)] = (seq, members);
        if members == 0 {
            self.complete();
        }
    }

    fn complete(&self) {
        self.completed.set(self.completed.get() + 1);
        self.notify.notify_one();
    }

    fn delivered(&self, seq: u64) {
        let done = {
            let mut ring = self.ring.borrow_mut();
            let entry = &mut ring[slot(seq)];
            if entry.0 == seq && entry.1 > 0 {
                entry.1 -= 1;
                entry.1 == 0
            } else {
                false
            }
        };
        if done {
            self.complete();
        }
    }

    /// Gives up on the oldest outstanding publication (a member missed it); its seq.
    pub(crate) fn give_up_oldest(&self) -> Option<u64> {
        let seq = {
            let mut ring = self.ring.borrow_mut();
            let oldest = ring
                .iter_mut()
                .filter(|(_, left)| *left > 0)
                .min_by_key(|(seq, _)| *seq)?;
            oldest.1 = 0;
            oldest.0
        };
        self.complete();
        Some(seq)
    }
}

fn slot(seq: u64) -> usize {
    // CAPACITY is a power of two.
    (seq as usize) & (Completion::CAPACITY - 1)
}

/// Everything counted in one process.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Deliveries since the start.
    pub(crate) deliveries: Cell<u64>,
    /// Deliveries inside the measured window.
    pub(crate) window_deliveries: Cell<u64>,
    /// Whether the window is open (latencies are recorded).
    pub(crate) measuring: Cell<bool>,
    /// Latencies inside the window.
    pub(crate) latency: RefCell<Histogram<u64>>,
    /// Publications received twice by one subscriber.
    pub(crate) duplicates: Cell<u64>,
    /// Errors (not refusals).
    pub(crate) errors: Cell<u64>,
    /// The first few error messages.
    pub(crate) error_samples: RefCell<Vec<String>>,
    /// Refused connection attempts.
    pub(crate) refused: Cell<u64>,
    /// Refusal codes seen, with counts.
    pub(crate) refusal_codes: RefCell<BTreeMap<String, u64>>,
    /// Per room.
    pub(crate) rooms: Vec<RoomCount>,
    /// Closed-loop completion (fanout).
    pub(crate) completion: Option<Completion>,
}

impl Stats {
    /// Counters for `rooms` rooms; with `closed_loop`, completion tracking.
    pub(crate) fn new(rooms: usize, closed_loop: bool) -> Self {
        Self {
            deliveries: Cell::new(0),
            window_deliveries: Cell::new(0),
            measuring: Cell::new(false),
            latency: RefCell::new(histogram()),
            duplicates: Cell::new(0),
            errors: Cell::new(0),
            error_samples: RefCell::new(Vec::new()),
            refused: Cell::new(0),
            refusal_codes: RefCell::new(BTreeMap::new()),
            rooms: (0..rooms).map(|_| RoomCount::default()).collect(),
            completion: closed_loop.then(Completion::new),
        }
    }

    /// Counts an error and keeps its message if there are few so far.
    pub(crate) fn error(&self, message: impl Into<String>) {
        self.errors.set(self.errors.get() + 1);
        let mut samples = self.error_samples.borrow_mut();
        if samples.len() < ERROR_SAMPLES {
            let message = message.into();
            eprintln!("error: {message}");
            samples.push(message);
        }
    }

    /// Counts a refused connection attempt.
    pub(crate) fn refusal(&self, code: String) {
        self.refused.set(self.refused.get() + 1);
        *self.refusal_codes.borrow_mut().entry(code).or_default() += 1;
    }

    /// Opens the measured window: counts and latencies start from zero.
    pub(crate) fn open_window(&self) {
        self.window_deliveries.set(0);
        self.latency.borrow_mut().reset();
        self.measuring.set(true);
    }

    /// Closes the window: `(deliveries, latency histogram)`.
    pub(crate) fn close_window(&self) -> (u64, Histogram<u64>) {
        self.measuring.set(false);
        let h = self.latency.replace(histogram());
        (self.window_deliveries.get(), h)
    }

    fn delivered(&self, seq: u64, latency_us: u64) {
        self.deliveries.set(self.deliveries.get() + 1);
        if self.measuring.get() {
            self.window_deliveries.set(self.window_deliveries.get() + 1);
            self.latency
                .borrow_mut()
                .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
        }
        if let Some(c) = &self.completion {
            c.delivered(seq);
        }
    }

    /// Publications the joined members of `subs` did not receive.
    pub(crate) fn missing(&self, subs: &[std::rc::Rc<Sub>]) -> u64 {
        subs.iter()
            .filter(|s| s.joined.get())
            .map(|s| {
                let expected = self.rooms.get(s.room).map_or(0, RoomCount::expected);
                expected.saturating_sub(s.track.get().distinct)
            })
            .sum()
    }
}

/// The [`Handler`] of a subscriber (which may also publish into its own room, in chat).
#[derive(Debug)]
pub(crate) struct SubHandler<'a> {
    /// Shared counters.
    pub(crate) stats: &'a Stats,
    /// This subscriber.
    pub(crate) sub: &'a Sub,
}

impl Handler for SubHandler<'_> {
    fn delivery(&mut self, seq: u64, t: u64, now: u64) {
        let mut track = self.sub.track.get();
        if track.record(seq) {
            self.sub.track.set(track);
            self.stats.delivered(seq, now.saturating_sub(t));
        } else {
            self.stats.duplicates.set(self.stats.duplicates.get() + 1);
        }
    }

    fn answer(&mut self, _id: u64, error: Option<String>) {
        if let Some(error) = error {
            if let Some(room) = self.stats.rooms.get(self.sub.room) {
                room.failed.set(room.failed.get() + 1);
            }
            self.stats.error(format!("publish refused: {error}"));
        }
    }

    fn problem(&mut self, message: String) {
        self.stats.error(format!("server error: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_in_order_out_of_order_and_duplicates() {
        let mut t = Track::default();
        assert!(t.record(1));
        assert!(t.record(3));
        assert!(t.record(2));
        assert!(!t.record(2));
        assert!(!t.record(3));
        assert!(t.record(5));
        assert_eq!(t.distinct, 4);
        // A jump far ahead slides the window; 4 stays missing.
        assert!(t.record(500));
        assert!(!t.record(500));
        assert!(t.record(499));
        assert_eq!(t.distinct, 6);
    }

    #[test]
    fn completion_counts_down() {
        let c = Completion::new();
        c.expect(1, 2);
        c.delivered(1);
        assert_eq!(c.completed.get(), 0);
        c.delivered(1);
        assert_eq!(c.completed.get(), 1);
        c.expect(2, 3);
        assert_eq!(c.give_up_oldest(), Some(2));
        assert_eq!(c.completed.get(), 2);
        assert_eq!(c.give_up_oldest(), None);
    }
}
