//! Runnable examples of the `streamgate` facade; see `quickstart.rs` and `chat/main.rs`. This
//! library part holds what the examples run — the demo producer, the [`chat`] service — so
//! that tests can run it too.

pub mod chat;

use std::time::Duration;

use streamgate::{Gateway, PublishError, RoomId};

/// Streams one synthetic LLM run into `room`: a `node.start` event, the words of `answer` as
/// tokens (each after `delay`), progress along the way, `node.complete`, then `complete`.
pub async fn demo_run(
    gateway: &Gateway,
    room: RoomId,
    answer: &str,
    delay: Duration,
) -> Result<(), PublishError> {
    let stream = gateway.stream(room);
    stream.event(
        "node.start",
        serde_json::json!({ "node": "llm", "model": "demo" }),
    )?;
    let words: Vec<&str> = answer.split_inclusive(' ').collect();
    for (i, word) in words.iter().enumerate() {
        if stream.is_cancelled() {
            return stream
                .error(streamgate::ErrorCode::StreamAborted, "cancelled")
                .map(|_| ());
        }
        stream.token(*word)?;
        if i % 4 == 3 {
            let done = (i + 1) as f32 / words.len() as f32;
            stream.progress(done, Some("generation"), None)?;
        }
        tokio::time::sleep(delay).await;
    }
    stream.progress(1.0, Some("generation"), Some("done"))?;
    stream.event(
        "node.complete",
        serde_json::json!({ "node": "llm", "tokens": words.len() }),
    )?;
    stream.complete(serde_json::json!({ "text": answer }))?;
    Ok(())
}
