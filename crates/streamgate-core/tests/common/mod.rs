//! Helpers shared by the hub's integration tests. Each test binary uses a subset.
#![allow(dead_code)]

use streamgate_core::{Hub, Principal, SessionHandle, SessionQueue, WireFormat};
use streamgate_protocol::{ClientFrame, Command, Join, Publication, RoomId, ServerFrame};

/// Parses a room id, panicking on a typo in the test.
pub(crate) fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Everything queued for a session so far, without waiting.
pub(crate) fn drain(queue: &mut SessionQueue) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Some(item) = queue.try_recv() {
        frames.extend(item.frames().iter().map(|f| f.frame().clone()));
    }
    frames
}

/// The publications among `frames`.
pub(crate) fn publications(frames: &[ServerFrame]) -> Vec<Publication> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Publication(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Sends `join` for `room` on `session`.
pub(crate) async fn join(session: &SessionHandle, room: &RoomId) {
    session
        .handle(ClientFrame::new(Command::Join(Join::new(room.clone()))))
        .await;
}

/// A session of `user` that joined `room`, with its queue drained.
pub(crate) async fn joined(hub: &Hub, user: &str, room: &RoomId) -> (SessionHandle, SessionQueue) {
    let (session, mut queue) = hub.connect(Principal::user(user), "test", WireFormat::Json);
    join(&session, room).await;
    drain(&mut queue);
    (session, queue)
}
