use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use parking_lot::Mutex;
use streamgate_protocol::{Position, Publication, RoomId, ServerFrame};

use crate::{OutFrame, RoomPolicy};

/// The outcome of a resume request.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The missed publications, in offset order, each once. Empty when not recovered.
    pub frames: Vec<Arc<OutFrame>>,
    /// Whether `frames` is every publication after the requested offset.
    pub recovered: bool,
    /// The room's position (epoch and latest offset).
    pub position: Position,
}

/// Room logs: offsets, epochs and bounded history. The hub calls it with the room's fan-out
/// lock held, so that assigning an offset, storing the publication and delivering it are one
/// step; implementations must therefore answer from memory without blocking (a networked store
/// keeps a local cache and synchronises it in the background).
pub trait HistoryStore: Send + Sync + 'static {
    /// Assigns `publication` the room's next offset and current epoch, stores it (trimmed to
    /// `policy`) and returns the frame to deliver.
    fn append(&self, policy: &RoomPolicy, publication: Publication) -> Arc<OutFrame>;

    /// The room's current position (a new epoch and offset 0 for a room never seen).
    fn position(&self, room: &RoomId) -> Position;

    /// The publications after `since`. Fails (`recovered: false`) when `epoch` is given and
    /// differs from the room's, when `since` is beyond the room's latest offset, or when the
    /// oldest kept publication is newer than `since + 1`.
    fn recover(
        &self,
        room: &RoomId,
        policy: &RoomPolicy,
        since: u64,
        epoch: Option<u64>,
    ) -> Recovery;

    /// Drops expired publications of every room and forgets rooms whose history is empty and
    /// whose retention has passed. `policy` gives each room's policy.
    fn sweep(&self, policy: &dyn Fn(&RoomId) -> RoomPolicy);

    /// Number of rooms with a log.
    fn rooms(&self) -> usize;
}

struct RoomLog {
    epoch: u64,
    top: u64,
    entries: VecDeque<(Instant, Arc<OutFrame>)>,
    touched: Instant,
}

impl RoomLog {
    fn trim(&mut self, policy: &RoomPolicy, now: Instant) {
        while self.entries.len() > policy.history_size {
            self.entries.pop_front();
        }
        while self
            .entries
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > policy.history_ttl)
        {
            self.entries.pop_front();
        }
    }

    fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.top,
        }
    }
}

/// In-process history: one bounded log per room, trimmed by count and age.
///
/// Epochs come from a per-process clock that never repeats, so a room that lost its history
/// (it expired, or the process restarted) never reuses an epoch and old positions fail to
/// resume instead of skipping publications.
#[derive(Default)]
pub struct MemoryHistory {
    logs: DashMap<RoomId, Arc<Mutex<RoomLog>>>,
    last_epoch: AtomicU64,
}

impl std::fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHistory")
            .field("rooms", &self.logs.len())
            .finish()
    }
}

impl MemoryHistory {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh epoch: milliseconds since the Unix epoch, bumped so it is never reused in this
    /// process. Stays below 2^53 so JavaScript clients read it exactly.
    fn next_epoch(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let mut last = self.last_epoch.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_epoch.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    fn log(&self, room: &RoomId) -> Arc<Mutex<RoomLog>> {
        if let Some(log) = self.logs.get(room) {
            return Arc::clone(&log);
        }
        let entry = self.logs.entry(room.clone()).or_insert_with(|| {
            Arc::new(Mutex::new(RoomLog {
                epoch: self.next_epoch(),
                top: 0,
                entries: VecDeque::new(),
                touched: Instant::now(),
            }))
        });
        Arc::clone(&entry)
    }
}

impl HistoryStore for MemoryHistory {
    fn append(&self, policy: &RoomPolicy, mut publication: Publication) -> Arc<OutFrame> {
        let log = self.log(&publication.room);
        let mut log = log.lock();
        let now = Instant::now();
        log.top += 1;
        log.touched = now;
        publication.offset = log.top;
        publication.epoch = log.epoch;
        if publication.id.is_empty() {
            publication.id = format!("{:x}-{}", publication.epoch, publication.offset);
        }
        let frame = OutFrame::new(ServerFrame::Publication(publication));
        if policy.history_size > 0 {
            log.entries.push_back((now, Arc::clone(&frame)));
        }
        log.trim(policy, now);
        frame
    }

    fn position(&self, room: &RoomId) -> Position {
        self.log(room).lock().position()
    }

    fn recover(
        &self,
        room: &RoomId,
        policy: &RoomPolicy,
        since: u64,
        epoch: Option<u64>,
    ) -> Recovery {
        let log = self.log(room);
        let mut log = log.lock();
        log.trim(policy, Instant::now());
        let position = log.position();
        let fail = Recovery {
            frames: Vec::new(),
            recovered: false,
            position,
        };
        if epoch.is_some_and(|e| e != log.epoch) || since > log.top {
            return fail;
        }
        if since == log.top {
            return Recovery {
                frames: Vec::new(),
                recovered: true,
                position,
            };
        }
        // Offsets in the log are contiguous, so the first missed one sits at a fixed distance
        // from the front.
        let Some(oldest) = log
            .entries
            .front()
            .and_then(|(_, f)| f.publication())
            .map(|p| p.offset)
        else {
            return fail;
        };
        if oldest > since + 1 {
            return fail;
        }
        let skip = usize::try_from(since + 1 - oldest).unwrap_or(usize::MAX);
        let frames = log
            .entries
            .iter()
            .skip(skip)
            .map(|(_, f)| Arc::clone(f))
            .collect();
        Recovery {
            frames,
            recovered: true,
            position,
        }
    }

    fn sweep(&self, policy: &dyn Fn(&RoomId) -> RoomPolicy) {
        let now = Instant::now();
        self.logs.retain(|room, log| {
            let policy = policy(room);
            let mut log = log.lock();
            log.trim(&policy, now);
            // An idle empty log is forgotten; its room gets a new epoch if it comes back.
            !(log.entries.is_empty() && now.duration_since(log.touched) > policy.history_ttl)
        });
    }

    fn rooms(&self) -> usize {
        self.logs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamgate_protocol::{Payload, Priority};

    use super::*;

    fn publication(room: &RoomId) -> Publication {
        Publication {
            room: room.clone(),
            offset: 0,
            epoch: 0,
            id: String::new(),
            event: "e".into(),
            data: Payload::null(),
            ts: 0,
            priority: Priority::Normal,
            ack: false,
        }
    }

    fn offsets(r: &Recovery) -> Vec<u64> {
        r.frames
            .iter()
            .filter_map(|f| f.publication())
            .map(|p| p.offset)
            .collect()
    }

    #[test]
    fn offsets_are_contiguous_and_recovery_is_exact() {
        let store = MemoryHistory::new();
        let room: RoomId = "execution:1".parse().unwrap_or_else(|e| panic!("{e}"));
        let policy = RoomPolicy::default().history(5, Duration::from_secs(60));
        for _ in 0..8 {
            store.append(&policy, publication(&room));
        }
        let pos = store.position(&room);
        assert_eq!(pos.offset, 8);
        // Kept: 4..=8.
        let r = store.recover(&room, &policy, 3, Some(pos.epoch));
        assert!(r.recovered);
        assert_eq!(offsets(&r), [4, 5, 6, 7, 8]);
        let r = store.recover(&room, &policy, 6, None);
        assert_eq!(offsets(&r), [7, 8]);
        let r = store.recover(&room, &policy, 8, None);
        assert!(r.recovered && r.frames.is_empty());
        assert!(
            !store.recover(&room, &policy, 2, None).recovered,
            "history no longer reaches back"
        );
        assert!(
            !store.recover(&room, &policy, 9, None).recovered,
            "from the future"
        );
        assert!(
            !store
                .recover(&room, &policy, 5, Some(pos.epoch + 1))
                .recovered,
            "other epoch"
        );
    }

    #[test]
    fn epochs_never_repeat() {
        let store = MemoryHistory::new();
        let a = store.next_epoch();
        let b = store.next_epoch();
        assert!(b > a);
        assert!(b < 1 << 53);
    }

    proptest::proptest! {
        #[test]
        fn recovery_never_gaps_or_duplicates(n in 0u64..60, size in 0usize..30, since in 0u64..70) {
            let store = MemoryHistory::new();
            let room: RoomId = "r:1".parse().unwrap_or_else(|e| panic!("{e}"));
            let policy = RoomPolicy::default().history(size, Duration::from_secs(60));
            for _ in 0..n {
                store.append(&policy, publication(&room));
            }
            let r = store.recover(&room, &policy, since, None);
            if r.recovered {
                let expected: Vec<u64> = (since + 1..=n).collect();
                proptest::prop_assert_eq!(offsets(&r), expected);
            } else {
                proptest::prop_assert!(r.frames.is_empty());
                let oldest_kept = n.saturating_sub(size as u64) + 1;
                proptest::prop_assert!(since > n || since + 1 < oldest_kept);
            }
        }
    }
}
