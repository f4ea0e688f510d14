use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use streamgate_protocol::{EncodeError, Publication, ServerFrame, WireFormat};

/// A server frame on its way to sessions, with its encodings cached: each wire format is
/// encoded at most once, however many sessions receive the frame.
#[derive(Debug)]
pub struct OutFrame {
    frame: ServerFrame,
    created: Instant,
    encoded: [OnceLock<Bytes>; 2],
}

impl OutFrame {
    /// Wraps a frame.
    #[must_use]
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        Arc::new(Self {
            frame,
            created: Instant::now(),
            encoded: [OnceLock::new(), OnceLock::new()],
        })
    }

    /// The frame.
    #[must_use]
    pub fn frame(&self) -> &ServerFrame {
        &self.frame
    }

    /// The publication, if this frame is one.
    #[must_use]
    pub fn publication(&self) -> Option<&Publication> {
        match &self.frame {
            ServerFrame::Publication(p) => Some(p),
            _ => None,
        }
    }

    /// When the frame was created on this node (for delivery latency).
    #[must_use]
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The frame's bytes in `format`, encoding on first use and sharing afterwards.
    pub fn encode(&self, format: WireFormat) -> Result<Bytes, EncodeError> {
        let slot = &self.encoded[format.index()];
        if let Some(bytes) = slot.get() {
            return Ok(bytes.clone());
        }
        let bytes = format.encode_server(&self.frame)?;
        Ok(slot.get_or_init(|| bytes).clone())
    }
}

/// One item of a session's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A single frame.
    Frame(Arc<OutFrame>),
    /// Frames that must be written in this order, taking one queue slot: the publications a
    /// resuming client missed.
    Batch(Arc<[Arc<OutFrame>]>),
}

impl Outbound {
    /// The frames of this item, in order.
    #[must_use]
    pub fn frames(&self) -> &[Arc<OutFrame>] {
        match self {
            Self::Frame(f) => std::slice::from_ref(f),
            Self::Batch(b) => b,
        }
    }
}
