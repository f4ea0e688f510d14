//! A minimal streaming SSE client on HTTP/1.1: the `GET`, chunked transfer decoding into a
//! body buffer, and events split out of it in place.

use std::net::SocketAddr;
use std::ops::Range;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::net::{self, Conn, ConnectError};

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// The CRLF after a chunk's data.
    End,
    /// Not chunked: the body is the rest of the connection.
    Raw,
}

/// One event found by [`Sse::next_event`]: ranges into [`Sse::body`].
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The `event:` field (empty: `message`).
    pub(crate) name: Range<usize>,
    /// The first `data:` line.
    pub(crate) data: Range<usize>,
}

/// An open event stream.
#[derive(Debug)]
pub(crate) struct Sse {
    /// The connection underneath.
    pub(crate) conn: Conn,
    chunk: Chunk,
    /// Decoded body bytes; events are parsed from `body[body_start..]`.
    pub(crate) body: Vec<u8>,
    body_start: usize,
}

impl Sse {
    /// `GET {path}` with a bearer token; a 503/429 answer is [`ConnectError::Refused`].
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        token: &str,
    ) -> Result<Self, ConnectError> {
        let mut conn = Conn::connect(addr).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        let head = conn.request_head(request.as_bytes()).await?;
        if head.status != 200 {
            let body = conn.read_body(&head).await;
            let code = net::refusal(head.status, &body);
            if net::is_refusal_status(head.status) {
                return Err(ConnectError::Refused(code));
            }
            return Err(ConnectError::Failed(anyhow!(
                "SSE refused: HTTP {code}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let content_type = head.header("content-type").unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            return Err(ConnectError::Failed(anyhow!(
                "SSE answered with content-type {content_type:?}"
            )));
        }
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        Ok(Self {
            conn,
            chunk: if chunked { Chunk::Size } else { Chunk::Raw },
            body: Vec::with_capacity(1024),
            body_start: 0,
        })
    }

    /// Moves received bytes through the chunked decoder into `body`. Call after every read,
    /// before [`Self::next_event`].
    pub(crate) fn decode(&mut self) -> Result<()> {
        if self.body_start == self.body.len() {
            self.body.clear();
            self.body_start = 0;
        } else if self.body_start > 4096 {
            self.body.drain(..self.body_start);
            self.body_start = 0;
        }
        loop {
            let unread = self.conn.unread();
            if unread.is_empty() {
                return Ok(());
            }
            match self.chunk {
                Chunk::Raw => {
                    self.body.extend_from_slice(unread);
                    self.conn.start = self.conn.end;
                }
                Chunk::Size => {
                    let Some(eol) = memchr::memmem::find(unread, b"\r\n") else {
                        if unread.len() > 1024 {
                            bail!("a malformed chunk size line");
                        }
                        return Ok(());
                    };
                    let line = std::str::from_utf8(&unread[..eol]).context("chunk size")?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .with_context(|| format!("a malformed chunk size {line:?}"))?;
                    self.conn.start += eol + 2;
                    if size == 0 {
                        bail!("the server ended the event stream");
                    }
                    self.chunk = Chunk::Data(size);
                }
                Chunk::Data(left) => {
                    let take = left.min(unread.len());
                    self.body.extend_from_slice(&unread[..take]);
                    self.conn.start += take;
                    self.chunk = if take == left {
                        Chunk::End
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::End => {
                    if unread.len() < 2 {
                        return Ok(());
                    }
                    if &unread[..2] != b"\r\n" {
                        bail!("a chunk not followed by CRLF");
                    }
                    self.conn.start += 2;
                    self.chunk = Chunk::Size;
                }
            }
        }
    }

    /// The next complete event in the decoded body, if any. Comments and events without data
    /// (keep-alives) are skipped.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        loop {
            let rest = &self.body[self.body_start..];
            let end = memchr::memmem::find(rest, b"\n\n")?;
            let block_start = self.body_start;
            self.body_start += end + 2;
            let mut name = 0..0;
            let mut data = None;
            let mut line_start = block_start;
            for line in self.body[block_start..block_start + end].split(|&b| b == b'\n') {
                let at = line_start;
                line_start += line.len() + 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let (field, value_at) = match memchr::memchr(b':', line) {
                    Some(0) | None => continue,
                    Some(colon) => {
                        let skip = usize::from(line.get(colon + 1) == Some(&b' '));
                        (&line[..colon], at + colon + 1 + skip)
                    }
                };
                let value = value_at..at + line.len();
                match field {
                    b"event" => name = value,
                    b"data" if data.is_none() => data = Some(value),
                    _ => {}
                }
            }
            if let Some(data) = data {
                return Some(Event { name, data });
            }
        }
    }
}
