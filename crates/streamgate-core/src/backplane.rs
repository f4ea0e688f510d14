use std::sync::Arc;

use crate::OutFrame;

/// Carries publications between gateway nodes so that a client connected to any node receives
/// every publication of its rooms. The hub hands each local publication to the backplane after
/// local fan-out; a networked backplane (Redis, NATS) delivers it to the other nodes' hubs.
pub trait Backplane: Send + Sync + 'static {
    /// Short name for logs and readiness reports.
    fn name(&self) -> &'static str;

    /// Replicates a publication made on this node. Must not block: a networked backplane
    /// queues it for its own I/O task.
    fn publish(&self, frame: &Arc<OutFrame>);

    /// Whether the backplane can currently carry traffic (readiness).
    fn is_ready(&self) -> bool;
}

/// The single-node backplane: every session is on this node, so local fan-out already reached
/// everyone and there is nothing to replicate. It is always ready.
///
/// ```
/// use streamgate_core::{Backplane, LocalBackplane};
/// assert!(LocalBackplane.is_ready());
/// assert_eq!(LocalBackplane.name(), "local");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBackplane;

impl Backplane for LocalBackplane {
    fn name(&self) -> &'static str {
        "local"
    }

    fn publish(&self, _frame: &Arc<OutFrame>) {}

    fn is_ready(&self) -> bool {
        true
    }
}
