//! A minimal WebSocket client (RFC 6455): the upgrade, frames parsed in place in the receive
//! buffer (no copy, no allocation per message), pings answered, masked frames sent.
//!
//! Hand-written rather than tokio-tungstenite because the generator runs 10,000 connections on
//! one core: a message costs a header parse and a slice here, where tungstenite allocates a
//! `Message` and runs its codec state machine per frame.

use std::net::SocketAddr;
use std::ops::Range;

use anyhow::{Result, anyhow, bail};

use crate::net::{self, Conn, ConnectError};

/// Text message.
pub(crate) const TEXT: u8 = 1;
/// Binary message.
pub(crate) const BINARY: u8 = 2;
const CONTINUATION: u8 = 0;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// The RFC 6455 example key, and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A data message found by [`Ws::next_message`]; its bytes are [`Ws::payload`].
#[derive(Debug, Clone)]
pub(crate) struct Message {
    at: Range<usize>,
    assembled: bool,
}

/// An upgraded WebSocket connection.
#[derive(Debug)]
pub(crate) struct Ws {
    /// The connection underneath.
    pub(crate) conn: Conn,
    frag: Vec<u8>,
    frag_opcode: Option<u8>,
    mask: u32,
}

impl Ws {
    /// Opens `ws://addr{path}` with the extra request header lines `headers` (each ending in
    /// `\r\n`). A 503/429 answer is [`ConnectError::Refused`].
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &str,
        seed: u32,
    ) -> Result<Self, ConnectError> {
        let mut conn = Conn::connect(addr).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        );
        let head = conn.request_head(request.as_bytes()).await?;
        if head.status != 101 {
            let body = conn.read_body(&head).await;
            let code = net::refusal(head.status, &body);
            if net::is_refusal_status(head.status) {
                return Err(ConnectError::Refused(code));
            }
            return Err(ConnectError::Failed(anyhow!(
                "upgrade refused: HTTP {code}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        if head.header("sec-websocket-accept") != Some(ACCEPT) {
            return Err(ConnectError::Failed(anyhow!(
                "upgrade answered without the right Sec-WebSocket-Accept"
            )));
        }
        Ok(Self {
            conn,
            frag: Vec::new(),
            frag_opcode: None,
            mask: seed | 1,
        })
    }

    /// The bytes of `message`.
    pub(crate) fn payload(&self, message: &Message) -> &[u8] {
        if message.assembled {
            &self.frag
        } else {
            &self.conn.buf[message.at.clone()]
        }
    }

    /// The next complete data message in the receive buffer, if any. Pings are answered (the
    /// pong is queued), a close frame is an error.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>> {
        loop {
            let unread = self.conn.unread();
            if unread.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (unread[0], unread[1]);
            if b1 & 0x80 != 0 {
                bail!("the server sent a masked frame");
            }
            let (len, header) = match b1 & 0x7f {
                126 if unread.len() >= 4 => {
                    (u64::from(u16::from_be_bytes([unread[2], unread[3]])), 4)
                }
                127 if unread.len() >= 10 => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&unread[2..10]);
                    (u64::from_be_bytes(be), 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            let total = usize::try_from(len)
                .ok()
                .and_then(|len| len.checked_add(header))
                .ok_or_else(|| anyhow!("a frame of {len} bytes"))?;
            if unread.len() < total {
                self.conn.reserve_message(total)?;
                return Ok(None);
            }
            let at = self.conn.start + header..self.conn.start + total;
            self.conn.start += total;
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0f {
                TEXT | BINARY if fin && self.frag_opcode.is_none() => {
                    return Ok(Some(Message {
                        at,
                        assembled: false,
                    }));
                }
                opcode @ (TEXT | BINARY) if self.frag_opcode.is_none() => {
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.conn.buf[at]);
                    self.frag_opcode = Some(opcode);
                }
                CONTINUATION => {
                    if self.frag_opcode.is_none() {
                        bail!("a continuation frame without a message to continue");
                    }
                    self.frag.extend_from_slice(&self.conn.buf[at]);
                    if fin {
                        self.frag_opcode = None;
                        return Ok(Some(Message {
                            at: 0..0,
                            assembled: true,
                        }));
                    }
                }
                PING => {
                    let data = self.conn.buf[at].to_vec();
                    self.queue(PONG, &data);
                }
                PONG => {}
                CLOSE => {
                    let body = &self.conn.buf[at];
                    let code = body
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                    bail!("the server closed the WebSocket: {code} {reason}");
                }
                opcode => bail!("an unexpected WebSocket opcode {opcode}"),
            }
        }
    }

    /// Queues one masked frame; it is sent at the next read or [`Conn::flush`].
    pub(crate) fn queue(&mut self, opcode: u8, payload: &[u8]) {
        // xorshift32: masking only has to be unpredictable to intermediaries, which loopback
        // has none of; the server just has to see masked frames.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        let key = self.mask.to_be_bytes();
        let out = &mut self.conn.out;
        out.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    }
}
