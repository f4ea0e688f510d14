//! Acknowledged delivery. A publication sent with `ack: true` waits for each recipient
//! session's `ack` (the protocol command, or the transport's own acknowledgement such as a
//! Socket.IO callback); a recipient that does not answer within
//! [`HubConfig::ack_timeout`](crate::HubConfig::ack_timeout) gets the publication again, up to
//! [`HubConfig::ack_attempts`](crate::HubConfig::ack_attempts) deliveries, and is then
//! reported failed. The publisher follows it all through a [`Delivery`].

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use streamgate_protocol::{Ack, Publication, RoomId};
use tokio::sync::watch;

use crate::{
    OutFrame, Outbound, PublishOutcome, SessionId,
    session::{Push, SessionShared},
};

/// How an acknowledgement names its publication: logged publications by offset, live-only
/// ones (offset 0) by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AckKey {
    Offset(RoomId, u64),
    Id(RoomId, String),
}

impl AckKey {
    pub(crate) fn of_publication(p: &Publication) -> Self {
        if p.offset > 0 {
            Self::Offset(p.room.clone(), p.offset)
        } else {
            Self::Id(p.room.clone(), p.id.clone())
        }
    }

    pub(crate) fn of_ack(ack: &Ack) -> Self {
        match &ack.pub_id {
            Some(id) if ack.offset == 0 => Self::Id(ack.room.clone(), id.clone()),
            _ => Self::Offset(ack.room.clone(), ack.offset),
        }
    }
}

/// One recipient session of an acknowledged publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The session.
    pub session: SessionId,
    /// The session's user, if it has one.
    pub user: Option<String>,
    /// How many times the publication was queued to the session.
    pub attempts: u32,
}

/// Where an acknowledged publication stands, by recipient session and user.
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::{Hub, HubConfig, Principal, Publish, WireFormat};
/// use streamgate_protocol::{Ack, ClientFrame, Command, Join};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let hub = Hub::builder(HubConfig::default().acks(Duration::from_millis(50), 2)).build()?;
/// let room: streamgate_protocol::RoomId = "conversation:42".parse()?;
/// let (alice, _queue) = hub.connect(Principal::user("alice"), "example", WireFormat::Json);
/// alice.handle(ClientFrame::new(Command::Join(Join::new(room.clone())))).await;
///
/// let delivery = hub.publish_with_report(&room, Publish::json("message.created", &"hi")?)?;
/// let offset = delivery.outcome().position.offset;
/// alice.handle(ClientFrame::new(Command::Ack(Ack::offset(room.clone(), offset)))).await;
///
/// let report = delivery.report().await;
/// assert_eq!(report.delivered.len(), 1);
/// assert_eq!(report.delivered[0].user.as_deref(), Some("alice"));
/// assert!(report.failed.is_empty() && report.pending.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The publication's room.
    pub room: RoomId,
    /// Its offset (0 for a live-only publication).
    pub offset: u64,
    /// Its id.
    pub id: String,
    /// Recipients that acknowledged.
    pub delivered: Vec<Recipient>,
    /// Recipients still waited for.
    pub pending: Vec<Recipient>,
    /// Recipients that did not acknowledge within the configured attempts, whose session
    /// closed first, or whose queue refused the publication.
    pub failed: Vec<Recipient>,
    /// Targeted users who had no session in the room: the publication waits in their offline
    /// queue (it is delivered when they next join the room, and not tracked further).
    pub offline: Vec<String>,
}

impl DeliveryReport {
    /// `true` once no recipient is pending.
    #[must_use]
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Delivered,
    Failed,
}

struct Entry {
    session: Weak<SessionShared>,
    user: Option<String>,
    attempts: u32,
    status: Status,
    /// Order of registration, to report recipients in a stable order.
    order: usize,
}

#[derive(Default)]
struct TrackerState {
    recipients: HashMap<SessionId, Entry>,
    pending: usize,
    offline: Vec<String>,
}

/// The acknowledgement state of one publication, shared by the publisher's [`Delivery`], the
/// retry task and the recipient sessions' pending-ack maps.
pub(crate) struct AckTracker {
    key: AckKey,
    /// The publication's position and id, for the report.
    room: RoomId,
    offset: u64,
    id: String,
    frame: Arc<OutFrame>,
    state: Mutex<TrackerState>,
    settled: watch::Sender<bool>,
}

impl AckTracker {
    pub(crate) fn new(frame: Arc<OutFrame>, publication: &Publication) -> Arc<Self> {
        Arc::new(Self {
            key: AckKey::of_publication(publication),
            room: publication.room.clone(),
            offset: publication.offset,
            id: publication.id.clone(),
            frame,
            state: Mutex::default(),
            settled: watch::Sender::new(false),
        })
    }

    /// Registers `session` as a recipient before its first delivery is queued, so that an
    /// ack racing the enqueue is never missed.
    pub(crate) fn register(self: &Arc<Self>, session: &Arc<SessionShared>) {
        session
            .acks
            .lock()
            .insert(self.key.clone(), Arc::clone(self));
        let user = session.principal().user.clone();
        let mut state = self.state.lock();
        let order = state.recipients.len();
        state.recipients.insert(
            session.id,
            Entry {
                session: Arc::downgrade(session),
                user,
                attempts: 1,
                status: Status::Pending,
                order,
            },
        );
        state.pending += 1;
    }

    /// The first delivery to `session` was not queued (full or closing queue).
    pub(crate) fn refused(&self, session: &SessionShared) {
        session.acks.lock().remove(&self.key);
        self.settle(session.id, Status::Failed);
    }

    pub(crate) fn add_offline(&self, user: String) {
        self.state.lock().offline.push(user);
    }

    /// `session` acknowledged; `false` if it was not pending.
    pub(crate) fn acknowledged(&self, session: SessionId) -> bool {
        self.settle(session, Status::Delivered)
    }

    /// `session` closed before acknowledging.
    pub(crate) fn session_closed(&self, session: SessionId) {
        self.settle(session, Status::Failed);
    }

    fn settle(&self, session: SessionId, status: Status) -> bool {
        let mut state = self.state.lock();
        let Some(entry) = state.recipients.get_mut(&session) else {
            return false;
        };
        if entry.status != Status::Pending {
            return false;
        }
        entry.status = status;
        state.pending -= 1;
        if state.pending == 0 {
            self.settled.send_replace(true);
        }
        true
    }

    /// Marks the tracker settled when nobody was registered.
    pub(crate) fn seal(&self) {
        if self.state.lock().pending == 0 {
            self.settled.send_replace(true);
        }
    }

    /// After a timeout: queues the publication again to every pending recipient that has
    /// attempts left, and fails the others. Returns how many are still pending.
    fn retry(&self, max_attempts: u32) -> usize {
        let mut failed = Vec::new();
        let mut state = self.state.lock();
        for (id, entry) in &mut state.recipients {
            if entry.status != Status::Pending {
                continue;
            }
            let session = entry.session.upgrade();
            let queued = entry.attempts < max_attempts
                && session.as_ref().is_some_and(|s| {
                    s.push(Outbound::Frame(Arc::clone(&self.frame)), false) == Push::Queued
                });
            if queued {
                entry.attempts += 1;
            } else {
                entry.status = Status::Failed;
                failed.push((*id, session));
            }
        }
        state.pending -= failed.len();
        let pending = state.pending;
        drop(state);
        for (_, session) in failed {
            if let Some(session) = session {
                session.acks.lock().remove(&self.key);
            }
        }
        if pending == 0 {
            self.settled.send_replace(true);
        }
        pending
    }

    fn report(&self) -> DeliveryReport {
        let state = self.state.lock();
        let mut report = DeliveryReport {
            room: self.room.clone(),
            offset: self.offset,
            id: self.id.clone(),
            delivered: Vec::new(),
            pending: Vec::new(),
            failed: Vec::new(),
            offline: state.offline.clone(),
        };
        let mut entries: Vec<(&SessionId, &Entry)> = state.recipients.iter().collect();
        entries.sort_by_key(|(_, e)| e.order);
        for (id, entry) in entries {
            let recipient = Recipient {
                session: *id,
                user: entry.user.clone(),
                attempts: entry.attempts,
            };
            match entry.status {
                Status::Pending => report.pending.push(recipient),
                Status::Delivered => report.delivered.push(recipient),
                Status::Failed => report.failed.push(recipient),
            }
        }
        report
    }
}

/// Sends the publication again every `timeout` until every recipient acknowledged or ran out
/// of attempts.
pub(crate) async fn drive(tracker: Arc<AckTracker>, timeout: Duration, max_attempts: u32) {
    let mut settled = tracker.settled.subscribe();
    loop {
        tokio::select! {
            _ = settled.wait_for(|s| *s) => return,
            () = tokio::time::sleep(timeout) => {}
        }
        if tracker.retry(max_attempts) == 0 {
            return;
        }
    }
}

/// An acknowledged publication in flight, returned by
/// [`Hub::publish_with_report`](crate::Hub::publish_with_report): what the publish did, and
/// the [`DeliveryReport`] once every recipient acknowledged or failed.
pub struct Delivery {
    pub(crate) outcome: PublishOutcome,
    pub(crate) tracker: Arc<AckTracker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// What the publish did (position, sessions queued for).
    #[must_use]
    pub fn outcome(&self) -> PublishOutcome {
        self.outcome
    }

    /// The report as it stands now (recipients may still be pending).
    #[must_use]
    pub fn snapshot(&self) -> DeliveryReport {
        self.tracker.report()
    }

    /// Waits until no recipient is pending, then reports. This takes at most about
    /// `ack_attempts × ack_timeout`; retries need a Tokio runtime.
    pub async fn report(self) -> DeliveryReport {
        let mut settled = self.tracker.settled.subscribe();
        // The sender lives in the tracker, which `self` holds: the wait ends only by settling.
        let _ = settled.wait_for(|s| *s).await;
        self.tracker.report()
    }
}
