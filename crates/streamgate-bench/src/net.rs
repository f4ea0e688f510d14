//! A buffered TCP connection: the receive buffer the framers parse in place, the send buffer
//! they append to, and the HTTP/1.1 response head both WebSocket and SSE start with.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Initial receive buffer per connection: a burst of a few dozen small messages per read.
const INITIAL_RX: usize = 4096;
/// Largest message we buffer; a server sending more is broken for this benchmark.
const MAX_RX: usize = 1 << 20;
/// Largest response head we accept.
const MAX_HEAD: usize = 16 * 1024;

/// Why a connection attempt did not become a usable client.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The server refused it for load (HTTP 503/429, or a Socket.IO `connect_error` saying so);
    /// the string is the refusal code, e.g. `503 SERVER_OVERLOADED`.
    Refused(String),
    /// Anything else.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for ConnectError {
    fn from(err: anyhow::Error) -> Self {
        Self::Failed(err)
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(err: std::io::Error) -> Self {
        Self::Failed(err.into())
    }
}

/// What woke [`Conn::read_some`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke<T> {
    /// Bytes arrived (and are in the buffer).
    Data,
    /// The caller's wake future completed first, with this output.
    Wake(T),
}

/// The status line and headers of an HTTP/1.1 response, lowercased header names.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// Status code.
    pub(crate) status: u16,
    /// `(name, value)` pairs, names lowercased.
    pub(crate) headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header called `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A TCP connection with an in-place receive buffer (`buf[start..end]` unread) and a send
/// buffer flushed before every read.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Receive buffer.
    pub(crate) buf: Vec<u8>,
    /// First unread byte.
    pub(crate) start: usize,
    /// End of the received bytes.
    pub(crate) end: usize,
    /// Bytes queued to send.
    pub(crate) out: Vec<u8>,
}

impl Conn {
    /// Connects with `TCP_NODELAY`.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: vec![0; INITIAL_RX],
            start: 0,
            end: 0,
            out: Vec::new(),
        })
    }

    /// The unread bytes.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Sends everything queued in `out`.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .await
                .context("write to the server")?;
            self.out.clear();
        }
        Ok(())
    }

    /// Flushes, then waits for bytes or for `wake`, whichever comes first. Only the read is
    /// raced, so nothing is lost when `wake` wins. The connection closing is an error.
    pub(crate) async fn read_some<F: Future>(&mut self, wake: F) -> Result<Woke<F::Output>> {
        self.flush().await?;
        self.make_room()?;
        let n = tokio::select! {
            biased;
            r = self.stream.read(&mut self.buf[self.end..]) => r.context("read from the server")?,
            w = wake => return Ok(Woke::Wake(w)),
        };
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.end += n;
        Ok(Woke::Data)
    }

    /// Moves the unread bytes to the front, and grows the buffer when it is full.
    fn make_room(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RX {
                bail!("a message larger than {MAX_RX} bytes");
            }
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        Ok(())
    }

    /// Makes sure `n` unread bytes can fit in the buffer (so a large frame can be completed).
    pub(crate) fn reserve_message(&mut self, n: usize) -> Result<()> {
        if n > MAX_RX {
            bail!("a message of {n} bytes (more than {MAX_RX})");
        }
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < n {
                self.buf.resize(n.next_power_of_two(), 0);
            }
        }
        Ok(())
    }

    /// Sends `request` and reads an HTTP/1.1 response head; the bytes after it stay unread.
    pub(crate) async fn request_head(&mut self, request: &[u8]) -> Result<ResponseHead> {
        self.out.extend_from_slice(request);
        loop {
            if let Some(pos) = memchr::memmem::find(self.unread(), b"\r\n\r\n") {
                let head = parse_head(&self.buf[self.start..self.start + pos])?;
                self.start += pos + 4;
                return Ok(head);
            }
            if self.end - self.start > MAX_HEAD {
                bail!("a response head larger than {MAX_HEAD} bytes");
            }
            self.read_some(std::future::pending::<()>()).await?;
        }
    }

    /// Reads the body of a refusal (`Content-Length`, else until close, at most 64 KiB) as text.
    pub(crate) async fn read_body(&mut self, head: &ResponseHead) -> String {
        let want = head
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(64 * 1024)
            .min(64 * 1024);
        let read = async {
            while self.end - self.start < want {
                if self.read_some(std::future::pending::<()>()).await.is_err() {
                    break;
                }
            }
        };
        let _timed_out = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
        let n = want.min(self.end - self.start);
        String::from_utf8_lossy(&self.buf[self.start..self.start + n]).into_owned()
    }
}

/// Parses `HTTP/1.1 101 Switching Protocols\r\nname: value\r\n…` (without the blank line).
fn parse_head(bytes: &[u8]) -> Result<ResponseHead> {
    let text = std::str::from_utf8(bytes).context("a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("a malformed status line {status_line:?}");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: {status_line:?}");
    }
    let status = code
        .parse()
        .with_context(|| format!("a malformed status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Ok(ResponseHead { status, headers })
}

/// The refusal code of a refused HTTP request: `STATUS CODE` with the JSON error code of the
/// body when there is one (`503 SERVER_OVERLOADED`).
pub(crate) fn refusal(status: u16, body: &str) -> String {
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

/// Whether an HTTP status is a load refusal (reported apart from other errors).
pub(crate) fn is_refusal_status(status: u16) -> bool {
    status == 503 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() -> Result<()> {
        let head = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nRetry-After: 1",
        )?;
        assert_eq!(head.status, 503);
        assert_eq!(head.header("content-length"), Some("12"));
        assert!(parse_head(b"garbage").is_err());
        Ok(())
    }

    #[test]
    fn names_refusals() {
        let body = r#"{"error":{"code":"SERVER_OVERLOADED","message":"x","recoverable":true,"retry_after_ms":1000}}"#;
        assert_eq!(refusal(503, body), "503 SERVER_OVERLOADED");
        assert_eq!(refusal(503, "nope"), "503");
    }
}
