use serde::Serialize;
use streamgate_protocol::{
    Cancelled, Complete, ErrorCode, Payload, Position, Progress, RoomId, StreamError, StreamEvent,
    StreamUpdate, Token,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use validator::Validate;

use crate::{Hub, Publish, PublishError};

/// The producer side of one stream (an LLM run, a task): tokens, events and progress, then
/// exactly one terminal update. Every update is a logged publication in the stream's room, so
/// viewers can join late and resume after a reconnect.
///
/// Dropping the handle without [`complete`](StreamHandle::complete),
/// [`error`](StreamHandle::error) or [`end_cancelled`](StreamHandle::end_cancelled) publishes
/// `stream.cancelled` if a client stopped the stream, and `stream.error` with `STREAM_ABORTED`
/// otherwise, so viewers never wait for a stream whose producer is gone.
///
/// ```
/// use streamgate_core::{Hub, HubConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::builder(HubConfig::default()).build()?;
/// let stream = hub.stream("execution:run-7".parse()?);
/// stream.event("node.start", serde_json::json!({"node": "llm"}))?;
/// for word in ["Hello", ", ", "world"] {
///     stream.token(word)?;
/// }
/// stream.progress(0.5, Some("generation"), None)?;
/// let end = stream.complete(serde_json::json!({"tokens": 3}))?;
/// assert_eq!(end.offset, 6);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StreamHandle {
    hub: Hub,
    room: RoomId,
    id: u64,
    cancel: CancellationToken,
    ended: bool,
}

impl StreamHandle {
    pub(crate) fn new(hub: Hub, room: RoomId, id: u64, cancel: CancellationToken) -> Self {
        Self {
            hub,
            room,
            id,
            cancel,
            ended: false,
        }
    }

    /// The stream's room.
    #[must_use]
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    fn send(&self, update: &StreamUpdate) -> Result<Position, PublishError> {
        let publish = Publish::new(update.event_name(), update.to_payload()?);
        Ok(self.hub.publish(&self.room, publish)?.position)
    }

    /// Publishes a token (`stream.token`).
    pub fn token(&self, text: impl Into<String>) -> Result<Position, PublishError> {
        self.send(&StreamUpdate::Token(Token { text: text.into() }))
    }

    /// Publishes a named workflow event (`stream.event`).
    pub fn event(
        &self,
        name: impl Into<String>,
        data: impl Serialize,
    ) -> Result<Position, PublishError> {
        let event = StreamEvent {
            name: name.into(),
            data: Payload::json(&data)?,
        };
        event
            .validate()
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        self.send(&StreamUpdate::Event(event))
    }

    /// Publishes progress (`stream.progress`); `value` must be within `0.0..=1.0`.
    pub fn progress(
        &self,
        value: f32,
        stage: Option<&str>,
        message: Option<&str>,
    ) -> Result<Position, PublishError> {
        let progress = Progress {
            value,
            stage: stage.map(str::to_owned),
            message: message.map(str::to_owned),
        };
        progress
            .validate()
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        self.send(&StreamUpdate::Progress(progress))
    }

    /// Ends the stream successfully (`stream.complete`).
    pub fn complete(mut self, result: impl Serialize) -> Result<Position, PublishError> {
        self.ended = true;
        self.send(&StreamUpdate::Complete(Complete {
            result: Payload::json(&result)?,
        }))
    }

    /// Ends the stream with an error (`stream.error`).
    pub fn error(
        mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<Position, PublishError> {
        self.ended = true;
        self.send(&StreamUpdate::Error(StreamError {
            code,
            message: message.into(),
        }))
    }

    /// Ends the stream after a Stop (`stream.cancelled`), with whatever the run produced so far
    /// as `result` (`()` for `null`). Call it once [`cancelled`](StreamHandle::cancelled)
    /// resolved; every viewer, every tab, receives it as the stream's terminal update.
    ///
    /// ```
    /// use streamgate_core::{Hub, HubConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::builder(HubConfig::default()).build()?;
    /// let room: streamgate_protocol::RoomId = "execution:run-8".parse()?;
    /// let stream = hub.stream(room.clone());
    /// stream.token("Hel")?;
    /// assert!(hub.cancel_stream(&room));
    /// stream.cancelled().await;
    /// stream.end_cancelled(serde_json::json!({"tokens": 1}))?;
    /// assert!(!hub.cancel_stream(&room));
    /// # Ok(())
    /// # }
    /// ```
    pub fn end_cancelled(mut self, result: impl Serialize) -> Result<Position, PublishError> {
        self.ended = true;
        self.send(&StreamUpdate::Cancelled(Cancelled {
            result: Payload::json(&result)?,
        }))
    }

    /// Resolves when [`Hub::cancel_stream`] is called for the stream's room, e.g. by a
    /// client's `stream.cancel` command (Stop). The producer should then stop, within one
    /// token, and end the stream with [`end_cancelled`](StreamHandle::end_cancelled).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the stream was cancelled.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        if !self.ended {
            let update = if self.cancel.is_cancelled() {
                StreamUpdate::Cancelled(Cancelled::default())
            } else {
                StreamUpdate::Error(StreamError {
                    code: ErrorCode::StreamAborted,
                    message: "the producer stopped without ending the stream".into(),
                })
            };
            if let Err(e) = self.send(&update) {
                tracing::warn!(room = %self.room, error = %e, "cannot publish stream abort");
            }
        }
        self.hub.stream_ended(&self.room, self.id);
    }
}
