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
/// Epochs come from a clock that never repeats within one store, so a room that lost its
/// history (it expired, or the process restarted without a snapshot) never reuses an epoch and
/// old positions fail to resume instead of skipping publications.
///
/// Cloning is cheap and shares the logs, so an application can keep a handle for
/// [`save`](MemoryHistory::save) and [`load`](MemoryHistory::load) after giving one to the hub:
/// a snapshot saved at shutdown and loaded at the next start keeps every room's epoch and
/// offsets, so clients resume across the restart.
///
/// ```
/// use streamgate_core::{Hub, HubConfig, MemoryHistory, Publish};
///
/// let history = MemoryHistory::new();
/// let hub = Hub::builder(HubConfig::default()).history(history.clone()).build()?;
/// hub.publish(&"execution:1".parse()?, Publish::json("e", &1)?)?;
/// assert_eq!(hub.stats().logged_rooms, 1);
/// let mut snapshot = Vec::new();
/// assert_eq!(history.save(&mut snapshot)?, 1); // the hub's log, through the kept handle
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default, Clone)]
pub struct MemoryHistory {
    logs: Arc<DashMap<RoomId, Arc<Mutex<RoomLog>>>>,
    last_epoch: Arc<AtomicU64>,
}

/// A history snapshot could not be loaded by [`MemoryHistory::load`]; nothing was loaded.
/// Every variant names the (1-based) line at fault.
///
/// ```
/// use streamgate_core::{MemoryHistory, SnapshotError};
///
/// let history = MemoryHistory::new();
/// let wrong = history.load(&b"{\"format\":\"something-else\",\"version\":1}\n"[..]);
/// assert!(matches!(wrong, Err(SnapshotError::Header(_))));
/// let error = history
///     .load(&b"{\"format\":\"streamgate-history\",\"version\":1}\n{\"room\":\n"[..])
///     .unwrap_err();
/// assert!(matches!(error, SnapshotError::Line { line: 2, .. }));
/// assert!(error.to_string().starts_with("line 2: "), "{error}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A line could not be read: an I/O error, or text that is not UTF-8.
    #[error("line {line}: cannot read it: {source}")]
    Io {
        /// 1-based line number.
        line: usize,
        /// What the reader reported.
        #[source]
        source: std::io::Error,
    },
    /// The input is empty, or its first line is not the header of a snapshot version this
    /// build reads (`{"format":"streamgate-history","version":1}`).
    #[error("line 1: not a streamgate history snapshot of version 1: {0}")]
    Header(String),
    /// A room line is malformed: not JSON of the expected shape, an epoch or offset out of
    /// range, publications that do not fit the room's log, or a room given twice.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

const SNAPSHOT_FORMAT: &str = "streamgate-history";
const SNAPSHOT_VERSION: u32 = 1;
/// Largest epoch or offset a snapshot may hold: 2^53 - 1, exact in JavaScript, and far from
/// overflowing when the store counts on from it.
const MAX_SNAPSHOT_NUMBER: u64 = (1 << 53) - 1;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotHeader {
    format: String,
    version: u32,
}

/// One room line as written.
#[derive(serde::Serialize)]
struct SnapshotRoomOut<'a> {
    room: &'a RoomId,
    epoch: u64,
    top: u64,
    entries: &'a [&'a Publication],
}

/// One room line as read.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRoom {
    room: RoomId,
    epoch: u64,
    top: u64,
    entries: Vec<Publication>,
}

impl SnapshotRoom {
    /// Parses and checks one room line: the epoch and latest offset in range, the
    /// publications of this room and epoch, with contiguous offsets ending at `top`.
    fn parse(text: &str) -> Result<Self, String> {
        let room: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if room.epoch == 0 || room.epoch > MAX_SNAPSHOT_NUMBER {
            return Err(format!(
                "room {}: epoch {} is out of range (1 to 2^53 - 1)",
                room.room, room.epoch
            ));
        }
        if room.top > MAX_SNAPSHOT_NUMBER {
            return Err(format!(
                "room {}: top {} is out of range (0 to 2^53 - 1)",
                room.room, room.top
            ));
        }
        let kept = u64::try_from(room.entries.len()).unwrap_or(u64::MAX);
        if kept > room.top {
            return Err(format!(
                "room {}: {kept} publications, but its latest offset is {}",
                room.room, room.top
            ));
        }
        // The kept publications are the last ones of the log: top - kept + 1 ..= top.
        for (expected, p) in (room.top - kept + 1..).zip(&room.entries) {
            if p.room != room.room || p.epoch != room.epoch || p.offset != expected {
                return Err(format!(
                    "room {}: the publication of room {}, epoch {}, offset {} does not belong \
                     at offset {expected} of epoch {}",
                    room.room, p.room, p.epoch, p.offset, room.epoch
                ));
            }
        }
        Ok(room)
    }
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

    /// Writes every room's log — its epoch, latest offset (`top`) and kept publications — as
    /// JSON lines: first the header `{"format":"streamgate-history","version":1}`, then one
    /// line `{"room":…,"epoch":…,"top":…,"entries":[…]}` per room (in room order), each entry a
    /// publication as the protocol's JSON codec writes it. [`load`](MemoryHistory::load) in a
    /// restarted process continues from there, so clients resume across the restart. Returns
    /// the number of publications written.
    ///
    /// Each room is copied under its own lock and written after it is released, so publishing
    /// goes on meanwhile (a room's line is its state at that moment). Expired publications
    /// that no sweep has removed yet are written too; they are dropped again after loading.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig, MemoryHistory, Publish};
    ///
    /// let history = MemoryHistory::new();
    /// let hub = Hub::builder(HubConfig::default()).history(history.clone()).build()?;
    /// let room = "execution:1".parse()?;
    /// for n in 1..=3 {
    ///     hub.publish(&room, Publish::json("e", &n)?)?;
    /// }
    /// let mut snapshot = Vec::new();
    /// assert_eq!(history.save(&mut snapshot)?, 3);
    ///
    /// // A restarted process.
    /// let restored = MemoryHistory::new();
    /// assert_eq!(restored.load(&snapshot[..])?, 3);
    /// let hub2 = Hub::builder(HubConfig::default()).history(restored).build()?;
    /// assert_eq!(hub2.position(&room), hub.position(&room));
    /// assert_eq!(hub2.publish(&room, Publish::json("e", &4)?)?.position.offset, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, mut w: impl std::io::Write) -> std::io::Result<usize> {
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT.into(),
            version: SNAPSHOT_VERSION,
        };
        serde_json::to_writer(&mut w, &header)?;
        w.write_all(b"\n")?;
        // Not iterated while writing: the map's shard locks would be held across the I/O.
        let mut logs: Vec<(RoomId, Arc<Mutex<RoomLog>>)> = self
            .logs
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        logs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut written = 0;
        for (room, log) in &logs {
            let (epoch, top, frames) = {
                let log = log.lock();
                let frames: Vec<Arc<OutFrame>> =
                    log.entries.iter().map(|(_, f)| Arc::clone(f)).collect();
                (log.epoch, log.top, frames)
            };
            let entries: Vec<&Publication> =
                frames.iter().filter_map(|f| f.publication()).collect();
            written += entries.len();
            let line = SnapshotRoomOut {
                room,
                epoch,
                top,
                entries: &entries,
            };
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        Ok(written)
    }

    /// Reads a snapshot written by [`save`](MemoryHistory::save). Each room gets back its
    /// epoch, its latest offset and its publications, replacing what this store had for the
    /// room; the next publication there gets offset `top + 1` in the same epoch. The epoch
    /// clock moves past every loaded epoch, so no room gets one of them anew. Each publication
    /// keeps its age (from its `ts`), so the room kind's history TTL still applies; one whose
    /// age cannot be represented by the monotonic clock (older than the clock's start, such as
    /// the machine's boot) counts as published now. Returns the number of publications loaded.
    ///
    /// The whole input is checked before anything is loaded: on an error (naming the line)
    /// the store is unchanged. Blank lines are skipped. It never panics.
    ///
    /// Load before the hub serves: a room replaced while in use keeps no members' positions
    /// (they fail to resume, as after an epoch change). And load a snapshot once: a process
    /// that loaded it and then published continues its epochs, so if it dies without saving,
    /// loading the same file again would hand out offsets that clients have already seen
    /// with other publications. Remove or overwrite the file after loading it.
    ///
    /// ```
    /// use streamgate_core::{MemoryHistory, SnapshotError};
    ///
    /// let history = MemoryHistory::new();
    /// let header = "{\"format\":\"streamgate-history\",\"version\":1}\n";
    /// let empty_room = "{\"room\":\"execution:1\",\"epoch\":7,\"top\":41,\"entries\":[]}\n";
    /// assert_eq!(history.load(format!("{header}{empty_room}").as_bytes())?, 0);
    ///
    /// let err = history.load(format!("{header}not json\n").as_bytes());
    /// assert!(matches!(err, Err(SnapshotError::Line { line: 2, .. })));
    /// # Ok::<(), SnapshotError>(())
    /// ```
    pub fn load(&self, r: impl std::io::BufRead) -> Result<usize, SnapshotError> {
        let mut lines = r.lines().zip(1..);
        let header = match lines.next() {
            None => return Err(SnapshotError::Header("the input is empty".into())),
            Some((text, line)) => text.map_err(|source| SnapshotError::Io { line, source })?,
        };
        match serde_json::from_str::<SnapshotHeader>(&header) {
            Ok(h) if h.format == SNAPSHOT_FORMAT && h.version == SNAPSHOT_VERSION => {}
            Ok(h) => {
                return Err(SnapshotError::Header(format!(
                    "format {:?}, version {}",
                    h.format, h.version
                )));
            }
            Err(e) => return Err(SnapshotError::Header(e.to_string())),
        }
        let mut rooms: Vec<SnapshotRoom> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (text, line) in lines {
            let text = text.map_err(|source| SnapshotError::Io { line, source })?;
            if text.trim().is_empty() {
                continue;
            }
            let room = SnapshotRoom::parse(&text)
                .map_err(|message| SnapshotError::Line { line, message })?;
            if !seen.insert(room.room.clone()) {
                return Err(SnapshotError::Line {
                    line,
                    message: format!("room {} appears twice", room.room),
                });
            }
            rooms.push(room);
        }
        // Before any room is in place: a log created meanwhile gets a later epoch.
        if let Some(max) = rooms.iter().map(|r| r.epoch).max() {
            self.last_epoch.fetch_max(max, Ordering::Relaxed);
        }
        let now = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut loaded = 0;
        for room in rooms {
            loaded += room.entries.len();
            let entries = room
                .entries
                .into_iter()
                .map(|p| {
                    let age = std::time::Duration::from_millis(now_ms.saturating_sub(p.ts));
                    let at = now.checked_sub(age).unwrap_or(now);
                    (at, OutFrame::new(ServerFrame::Publication(p)))
                })
                .collect();
            let log = RoomLog {
                epoch: room.epoch,
                top: room.top,
                entries,
                touched: now,
            };
            self.logs.insert(room.room, Arc::new(Mutex::new(log)));
        }
        Ok(loaded)
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
