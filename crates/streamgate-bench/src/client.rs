//! One benchmark client of any system: connect, authenticate and join in one call, then
//! [`Client::pump`] the messages into a [`Handler`], and publish.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;
use streamgate_protocol::{ClientFrame, Command, Payload, ServerFrame, UserCommand, WireFormat};

use crate::net::{ConnectError, Woke};
use crate::payload;
use crate::sse::Sse;
use crate::ws::{self, Ws};

/// Largest server frame decoded during setup.
const MAX_FRAME: usize = 1 << 20;
/// The Socket.IO namespace every system serves.
const NAMESPACE: &str = "/streaming";

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum System {
    /// streamgate raw WebSocket, JSON codec.
    SgWsJson,
    /// streamgate raw WebSocket, bincode codec.
    SgWsBincode,
    /// streamgate Server-Sent Events.
    SgSse,
    /// streamgate Socket.IO transport.
    SgSocketio,
    /// The Node.js socket.io peer.
    Node,
    /// The socketioxide peer.
    Socketioxide,
}

impl System {
    /// The name on the command line and in the result.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::SgWsJson => "sg-ws-json",
            Self::SgWsBincode => "sg-ws-bincode",
            Self::SgSse => "sg-sse",
            Self::SgSocketio => "sg-socketio",
            Self::Node => "node",
            Self::Socketioxide => "socketioxide",
        }
    }

    /// Whether this is streamgate (rather than a peer).
    pub(crate) fn is_streamgate(self) -> bool {
        !matches!(self, Self::Node | Self::Socketioxide)
    }

    /// The system of the separate publisher connection: streamgate publishes over WS JSON.
    pub(crate) fn publisher(self) -> Self {
        if self.is_streamgate() {
            Self::SgWsJson
        } else {
            self
        }
    }

    /// Whether a client of this system can publish over its own connection.
    pub(crate) fn can_publish(self) -> bool {
        self != Self::SgSse
    }
}

/// What a pumped client reports.
pub(crate) trait Handler {
    /// A publication payload `(seq, t)` arrived at `now` µs.
    fn delivery(&mut self, seq: u64, t: u64, now: u64);
    /// The answer to publish request `id`: `None` for success, else the error.
    fn answer(&mut self, id: u64, error: Option<String>);
    /// An error the server reported that answers no request.
    fn problem(&mut self, message: String);
}

#[derive(Debug)]
enum Transport {
    Ws { ws: Ws, format: WireFormat },
    Sse(Sse),
    Sio { ws: Ws, peer: bool },
}

/// A connected, authenticated client that joined its room.
#[derive(Debug)]
pub(crate) struct Client {
    transport: Transport,
    next_id: u64,
}

impl Client {
    /// Connects to `addr` as `system` with `token`, joins `room` (if any) and returns once the
    /// join is confirmed.
    pub(crate) async fn connect(
        system: System,
        addr: SocketAddr,
        token: &str,
        room: Option<&str>,
        seed: u32,
    ) -> Result<Self, ConnectError> {
        let transport = match system {
            System::SgWsJson | System::SgWsBincode => {
                let format = if system == System::SgWsJson {
                    WireFormat::Json
                } else {
                    WireFormat::Bincode
                };
                let headers = format!(
                    "Sec-WebSocket-Protocol: {}\r\nAuthorization: Bearer {token}\r\n",
                    format.subprotocol()
                );
                let mut ws = Ws::connect(addr, "/ws", &headers, seed).await?;
                ws_setup(&mut ws, format, room).await?;
                Transport::Ws { ws, format }
            }
            System::SgSse => {
                let path = match room {
                    Some(room) => format!("/sse?rooms={room}"),
                    None => "/sse".to_owned(),
                };
                let mut sse = Sse::connect(addr, &path, token).await?;
                sse_setup(&mut sse, room.is_some()).await?;
                Transport::Sse(sse)
            }
            System::SgSocketio | System::Node | System::Socketioxide => {
                let peer = !system.is_streamgate();
                let mut ws =
                    Ws::connect(addr, "/socket.io/?EIO=4&transport=websocket", "", seed).await?;
                sio_setup(&mut ws, token, room, peer).await?;
                Transport::Sio { ws, peer }
            }
        };
        Ok(Self {
            transport,
            next_id: 100,
        })
    }

    /// Queues a publication of `data` into `room`; returns the request id when the server
    /// answers it (streamgate), `None` otherwise (the peers' `publish` has no answer).
    pub(crate) fn queue_publish(&mut self, room: &str, data: &str) -> Result<Option<u64>> {
        let id = self.next_id;
        self.next_id += 1;
        match &mut self.transport {
            Transport::Ws {
                ws,
                format: WireFormat::Json,
            } => {
                let frame = format!(
                    r#"{{"type":"command","id":{id},"name":"publish","room":"{room}","data":{data}}}"#
                );
                ws.queue(ws::TEXT, frame.as_bytes());
                Ok(Some(id))
            }
            Transport::Ws { ws, format } => {
                let frame = ClientFrame::new(Command::Command(UserCommand {
                    name: "publish".to_owned(),
                    room: Some(room.parse().context("room id")?),
                    data: Payload::from_json_text(data.to_owned()).context("payload")?,
                }))
                .with_id(id);
                let bytes = format.encode_client(&frame).context("encode")?;
                ws.queue(ws::BINARY, &bytes);
                Ok(Some(id))
            }
            Transport::Sio { ws, peer: false } => {
                let packet = format!(
                    r#"42{NAMESPACE},{id}["command",{{"name":"publish","room":"{room}","data":{data}}}]"#
                );
                ws.queue(ws::TEXT, packet.as_bytes());
                Ok(Some(id))
            }
            Transport::Sio { ws, peer: true } => {
                let packet =
                    format!(r#"42{NAMESPACE},["publish",{{"room":"{room}","data":{data}}}]"#);
                ws.queue(ws::TEXT, packet.as_bytes());
                Ok(None)
            }
            Transport::Sse(_) => bail!("an SSE client cannot publish"),
        }
    }

    /// Sends what is queued, waits for bytes or `wake`, and hands every complete message to
    /// `handler`. An error means the connection is unusable.
    pub(crate) async fn pump<F: Future>(
        &mut self,
        handler: &mut impl Handler,
        wake: F,
    ) -> Result<Woke<F::Output>> {
        match &mut self.transport {
            Transport::Ws { ws, format } => {
                if let Woke::Wake(w) = ws.conn.read_some(wake).await? {
                    return Ok(Woke::Wake(w));
                }
                let now = payload::now_us();
                while let Some(message) = ws.next_message()? {
                    ws_message(ws.payload(&message), *format, handler, now)?;
                }
            }
            Transport::Sse(sse) => {
                if let Woke::Wake(w) = sse.conn.read_some(wake).await? {
                    return Ok(Woke::Wake(w));
                }
                let now = payload::now_us();
                sse.decode()?;
                while let Some(event) = sse.next_event() {
                    let name = &sse.body[event.name.clone()];
                    let data = &sse.body[event.data.clone()];
                    sse_event(name, data, handler, now)?;
                }
            }
            Transport::Sio { ws, peer } => {
                if let Woke::Wake(w) = ws.conn.read_some(wake).await? {
                    return Ok(Woke::Wake(w));
                }
                let now = payload::now_us();
                let mut pong = false;
                while let Some(message) = ws.next_message()? {
                    pong |= sio_message(ws.payload(&message), *peer, handler, now)?;
                }
                if pong {
                    ws.queue(ws::TEXT, b"3");
                }
            }
        }
        Ok(Woke::Data)
    }
}

// ---- raw WebSocket ---------------------------------------------------------------------------

/// Waits for the next data message during setup, copied out.
async fn setup_message(ws: &mut Ws) -> Result<Vec<u8>> {
    loop {
        if let Some(message) = ws.next_message()? {
            return Ok(ws.payload(&message).to_vec());
        }
        ws.conn.read_some(std::future::pending::<()>()).await?;
    }
}

fn decode_server(format: WireFormat, bytes: &[u8]) -> Result<ServerFrame> {
    format
        .decode_server(bytes, MAX_FRAME)
        .map_err(|e| anyhow!("an undecodable server frame: {e}"))
}

/// `connected`, then `join` → `joined`.
async fn ws_setup(ws: &mut Ws, format: WireFormat, room: Option<&str>) -> Result<(), ConnectError> {
    loop {
        let bytes = setup_message(ws).await?;
        match decode_server(format, &bytes)? {
            ServerFrame::Connected(_) => break,
            ServerFrame::Disconnect(d) => return Err(disconnect_error(d.code.as_str(), &d.reason)),
            ServerFrame::Error(e) => {
                return Err(ConnectError::Failed(anyhow!(
                    "before connected: {} {}",
                    e.error.code,
                    e.error.message
                )));
            }
            _ => {}
        }
    }
    let Some(room) = room else { return Ok(()) };
    let frame = ClientFrame::new(Command::Join(streamgate_protocol::Join::new(
        room.parse().context("room id")?,
    )))
    .with_id(1);
    let bytes = format.encode_client(&frame).context("encode join")?;
    ws.queue(
        if format == WireFormat::Json {
            ws::TEXT
        } else {
            ws::BINARY
        },
        &bytes,
    );
    loop {
        let bytes = setup_message(ws).await?;
        match decode_server(format, &bytes)? {
            ServerFrame::Joined(j) if j.id == Some(1) => return Ok(()),
            ServerFrame::Error(e) => {
                return Err(ConnectError::Failed(anyhow!(
                    "join refused: {} {}",
                    e.error.code,
                    e.error.message
                )));
            }
            ServerFrame::Disconnect(d) => return Err(disconnect_error(d.code.as_str(), &d.reason)),
            _ => {}
        }
    }
}

fn disconnect_error(code: &str, reason: &str) -> ConnectError {
    if code == "SERVER_OVERLOADED" {
        ConnectError::Refused(format!("disconnect {code}"))
    } else {
        ConnectError::Failed(anyhow!("disconnected: {code} {reason}"))
    }
}

fn ws_message(
    bytes: &[u8],
    format: WireFormat,
    handler: &mut impl Handler,
    now: u64,
) -> Result<()> {
    let is_pub = match format {
        WireFormat::Json => bytes.starts_with(br#"{"type":"pub""#),
        // The variant index of `pub`, a one-byte varint.
        _ => bytes.first() == Some(&1),
    };
    if is_pub {
        if let Some((seq, t)) = payload::scan(bytes) {
            handler.delivery(seq, t, now);
        }
        return Ok(());
    }
    if format == WireFormat::Json && bytes.starts_with(br#"{"type":"reply","id":"#) {
        // Parse only the id: replies come once per publication on the publisher.
        let rest = &bytes[br#"{"type":"reply","id":"#.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .context("a reply without a numeric id")?;
        handler.answer(id, None);
        return Ok(());
    }
    match decode_server(format, bytes)? {
        ServerFrame::Reply(r) => handler.answer(r.id, None),
        ServerFrame::Error(e) => {
            let message = format!("{} {}", e.error.code, e.error.message);
            match e.id {
                Some(id) => handler.answer(id, Some(message)),
                None => handler.problem(message),
            }
        }
        ServerFrame::Disconnect(d) => bail!("disconnected: {} {}", d.code, d.reason),
        _ => {}
    }
    Ok(())
}

// ---- SSE -------------------------------------------------------------------------------------

/// `connected`, then (with a room) its `joined`.
async fn sse_setup(sse: &mut Sse, joins: bool) -> Result<(), ConnectError> {
    // The events may have come with the response head.
    sse.decode()?;
    loop {
        while let Some(event) = sse.next_event() {
            let name = &sse.body[event.name.clone()];
            let data = &sse.body[event.data.clone()];
            match name {
                b"connected" if !joins => return Ok(()),
                b"joined" => return Ok(()),
                b"error" | b"disconnect" => {
                    return Err(ConnectError::Failed(anyhow!(
                        "SSE {}: {}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(data)
                    )));
                }
                _ => {}
            }
        }
        sse.conn.read_some(std::future::pending::<()>()).await?;
        sse.decode()?;
    }
}

fn sse_event(name: &[u8], data: &[u8], handler: &mut impl Handler, now: u64) -> Result<()> {
    match name {
        b"pub" => {
            if let Some((seq, t)) = payload::scan(data) {
                handler.delivery(seq, t, now);
            }
        }
        b"error" => handler.problem(String::from_utf8_lossy(data).into_owned()),
        b"disconnect" => bail!("SSE disconnect: {}", String::from_utf8_lossy(data)),
        _ => {}
    }
    Ok(())
}

// ---- Socket.IO -------------------------------------------------------------------------------

/// A Socket.IO packet of our namespace: `(type, ack id, JSON)`.
fn sio_packet(text: &[u8]) -> Option<(u8, Option<u64>, &[u8])> {
    // Engine.IO `4` (message), then the Socket.IO type digit.
    let rest = text.strip_prefix(b"4")?;
    let (&kind, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(NAMESPACE.as_bytes())?;
    let rest = rest.strip_prefix(b",").unwrap_or(rest);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|s| s.parse().ok());
    Some((kind, id, &rest[digits..]))
}

/// Engine.IO open, namespace connect with the auth payload, then (streamgate) `join` with an
/// acknowledgement.
async fn sio_setup(
    ws: &mut Ws,
    token: &str,
    room: Option<&str>,
    peer: bool,
) -> Result<(), ConnectError> {
    let open = setup_message(ws).await?;
    if open.first() != Some(&b'0') {
        return Err(ConnectError::Failed(anyhow!(
            "expected an Engine.IO open packet, got {}",
            String::from_utf8_lossy(&open)
        )));
    }
    let auth = if peer {
        let rooms: Vec<&str> = room.into_iter().collect();
        serde_json::json!({ "token": token, "rooms": rooms })
    } else {
        serde_json::json!({ "token": token })
    };
    ws.queue(ws::TEXT, format!("40{NAMESPACE},{auth}").as_bytes());
    loop {
        let message = setup_message(ws).await?;
        if message == b"2" {
            ws.queue(ws::TEXT, b"3");
            continue;
        }
        match sio_packet(&message) {
            Some((b'0', _, _)) => break,
            Some((b'4', _, body)) => {
                let body = String::from_utf8_lossy(body);
                if body.contains("SERVER_OVERLOADED") {
                    return Err(ConnectError::Refused(
                        "connect_error SERVER_OVERLOADED".into(),
                    ));
                }
                return Err(ConnectError::Failed(anyhow!("connect_error {body}")));
            }
            _ => {}
        }
    }
    let Some(room) = room.filter(|_| !peer) else {
        return Ok(());
    };
    ws.queue(
        ws::TEXT,
        format!(r#"42{NAMESPACE},1["join",{{"room":"{room}"}}]"#).as_bytes(),
    );
    loop {
        let message = setup_message(ws).await?;
        if message == b"2" {
            ws.queue(ws::TEXT, b"3");
            continue;
        }
        match sio_packet(&message) {
            Some((b'3', Some(1), body)) => {
                let answer: Value = serde_json::from_slice(body).context("join answer")?;
                if let Some(error) = answer.get(0).and_then(|a| a.get("error")) {
                    return Err(ConnectError::Failed(anyhow!("join refused: {error}")));
                }
                return Ok(());
            }
            Some((b'1', _, _)) => {
                return Err(ConnectError::Failed(anyhow!(
                    "disconnected from the namespace"
                )));
            }
            _ => {}
        }
    }
}

/// Handles one Socket.IO message; returns whether an Engine.IO ping wants a pong.
fn sio_message(bytes: &[u8], peer: bool, handler: &mut impl Handler, now: u64) -> Result<bool> {
    match bytes.first() {
        Some(b'2') => return Ok(true),
        Some(b'1') => bail!("the server closed the Engine.IO connection"),
        Some(b'4') => {}
        _ => return Ok(false),
    }
    match sio_packet(bytes) {
        Some((b'2', _, body)) => {
            let delivery = if peer {
                body.starts_with(br#"["message","#)
            } else {
                body.starts_with(br#"["stream.data","#)
            };
            if delivery {
                if let Some((seq, t)) = payload::scan(body) {
                    handler.delivery(seq, t, now);
                }
            } else if body.starts_with(br#"["gateway.disconnect""#) {
                bail!("gateway.disconnect: {}", String::from_utf8_lossy(body));
            } else if body.starts_with(br#"["gateway.error""#) {
                handler.problem(String::from_utf8_lossy(body).into_owned());
            }
        }
        Some((b'3', Some(id), body)) => {
            let error = if memchr::memmem::find(body, br#""error""#).is_some() {
                Some(String::from_utf8_lossy(body).into_owned())
            } else {
                None
            };
            handler.answer(id, error);
        }
        Some((b'1', _, _)) => bail!("disconnected from the namespace"),
        Some((b'4', _, body)) => bail!("connect_error {}", String::from_utf8_lossy(body)),
        _ => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socketio_packets() {
        assert_eq!(
            sio_packet(br#"43/streaming,7[{"room":"r"}]"#),
            Some((b'3', Some(7), &br#"[{"room":"r"}]"#[..]))
        );
        assert_eq!(
            sio_packet(br#"42/streaming,["message",{}]"#),
            Some((b'2', None, &br#"["message",{}]"#[..]))
        );
        assert_eq!(sio_packet(br#"42["message",{}]"#), None);
    }
}
