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
    json_raw: OnceLock<Option<Box<serde_json::value::RawValue>>>,
}

impl OutFrame {
    /// Wraps a frame.
    #[must_use]
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        Arc::new(Self {
            frame,
            created: Instant::now(),
            encoded: [OnceLock::new(), OnceLock::new()],
            json_raw: OnceLock::new(),
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

impl OutFrame {
    /// The JSON encoding as a raw JSON value, checked once however many sessions receive the
    /// frame: for transports that embed the frame in JSON of their own (Socket.IO) without
    /// re-serializing or re-validating it per recipient. `None` if it cannot be encoded.
    ///
    /// ```
    /// use streamgate_core::OutFrame;
    /// use streamgate_protocol::{Pong, ServerFrame};
    ///
    /// let frame = OutFrame::new(ServerFrame::Pong(Pong { id: Some(3) }));
    /// assert_eq!(frame.json_raw().map(|raw| raw.get()), Some(r#"{"type":"pong","id":3}"#));
    /// ```
    #[must_use]
    pub fn json_raw(&self) -> Option<&serde_json::value::RawValue> {
        self.json_raw
            .get_or_init(|| {
                let bytes = self.encode(WireFormat::Json).ok()?;
                let text = String::from_utf8(bytes.to_vec()).ok()?;
                serde_json::value::RawValue::from_string(text).ok()
            })
            .as_deref()
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
