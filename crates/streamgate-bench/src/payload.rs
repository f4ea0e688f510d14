//! The publication payload: exactly 64 bytes of JSON, `{"s":SEQ,"t":MICROS,"p":"xx…"}`, and
//! the scan that finds it in any received message (JSON frame, bincode frame, SSE event,
//! Socket.IO packet), because every system carries the data as its JSON text.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem;

/// The payload's opening, searched once per received message: built once.
static OPENING: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"{\"s\":"));

/// Size of the payload's JSON text.
pub(crate) const PAYLOAD_LEN: usize = 64;

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The payload of publication `seq`, stamped now.
pub(crate) fn payload(seq: u64) -> String {
    payload_at(seq, now_us())
}

/// The payload of publication `seq` sent at `t` µs.
pub(crate) fn payload_at(seq: u64, t: u64) -> String {
    let mut text = format!("{{\"s\":{seq},\"t\":{t},\"p\":\"");
    let pad = PAYLOAD_LEN.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    text
}

/// Finds `{"s":SEQ,"t":MICROS` in `bytes`: `(seq, t)`.
pub(crate) fn scan(bytes: &[u8]) -> Option<(u64, u64)> {
    let at = OPENING.find(bytes)?;
    let rest = &bytes[at + 5..];
    let (seq, used) = number(rest)?;
    let rest = rest.get(used..)?.strip_prefix(b",\"t\":")?;
    let (t, _) = number(rest)?;
    Some((seq, t))
}

/// A leading decimal number and how many bytes it took.
fn number(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        used += 1;
    }
    (used > 0).then_some((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_64_bytes_and_scan_back() {
        for seq in [1, 42, 123_456_789] {
            let text = payload_at(seq, 1_700_000_000_123_456);
            assert_eq!(text.len(), PAYLOAD_LEN, "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
            let frame = format!(r#"{{"type":"pub","room":"bench:r0","data":{text},"ts":1}}"#);
            assert_eq!(scan(frame.as_bytes()), Some((seq, 1_700_000_000_123_456)));
        }
    }

    #[test]
    fn scan_ignores_other_messages() {
        assert_eq!(scan(br#"{"type":"joined","id":1}"#), None);
        assert_eq!(scan(br#"{"s":,"t":1}"#), None);
        assert_eq!(scan(br#"{"s":1}"#), None);
    }
}
