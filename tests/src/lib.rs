//! Test harness: a gateway served on a loopback port, and a protocol client over a real
//! WebSocket (tokio-tungstenite) that speaks both codecs.

pub mod browser;
pub mod node;

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use streamgate::Gateway;
use streamgate_protocol::{
    ClientFrame, Command, Connected, Join, Joined, Publication, RoomId, ServerFrame, WireFormat,
};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame},
};

/// Longest a test waits for any one expected event before failing.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A gateway listening on `127.0.0.1:{port}`, stopped on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The gateway, for producing and for inspecting hub state.
    pub gateway: Gateway,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `gateway.router()` on a free loopback port.
    pub async fn start(gateway: Gateway) -> Result<Self> {
        Self::start_with(gateway, axum::Router::new()).await
    }

    /// Serves `gateway.router()` merged with `extra` (test pages, transports mounted by hand).
    pub async fn start_with(gateway: Gateway, extra: axum::Router) -> Result<Self> {
        use axum::serve::ListenerExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Real-time traffic: no Nagle delay on small frames.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                eprintln!("set_nodelay: {e}");
            }
        });
        let app = gateway
            .router()
            .merge(extra)
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("test server stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            gateway,
            task,
        })
    }

    /// `ws://addr/ws`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Waits until the hub holds exactly `n` sessions.
    pub async fn wait_sessions(&self, n: usize) -> Result<()> {
        wait_for(|| self.gateway.hub().stats().sessions == n)
            .await
            .with_context(|| {
                format!(
                    "expected {n} sessions, have {}",
                    self.gateway.hub().stats().sessions
                )
            })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after [`STEP_TIMEOUT`].
pub async fn wait_for(mut condition: impl FnMut() -> bool) -> Result<()> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| anyhow!("condition not reached within {STEP_TIMEOUT:?}"))
}

/// How a client presents credentials.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// `Authorization: Bearer`.
    Header(&'a str),
    /// `?token=`.
    Query(&'a str),
    /// Nothing in the handshake.
    None,
}

/// A protocol client over a real WebSocket.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    format: WireFormat,
    next_id: u64,
    /// The `connected` frame, once received.
    pub connected: Option<Connected>,
}

impl Client {
    /// Opens the socket and negotiates `format`, without waiting for any frame.
    pub async fn open(url: &str, auth: Auth<'_>, format: WireFormat) -> Result<Self> {
        let url = match auth {
            Auth::Query(token) => format!("{url}?token={token}"),
            _ => url.to_owned(),
        };
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(format.subprotocol()),
        );
        if let Auth::Header(token) = auth {
            headers.insert(
                "Authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        let (ws, response) =
            tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        let negotiated = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if negotiated != Some(format.subprotocol()) {
            bail!("server negotiated {negotiated:?}");
        }
        Ok(Self {
            ws,
            format,
            next_id: 1,
            connected: None,
        })
    }

    /// Opens the socket and waits for the `connected` frame.
    pub async fn connect(url: &str, token: &str, format: WireFormat) -> Result<Self> {
        let mut client = Self::open(url, Auth::Header(token), format).await?;
        client.expect_connected().await?;
        Ok(client)
    }

    /// Waits for the `connected` frame.
    pub async fn expect_connected(&mut self) -> Result<Connected> {
        match self.recv().await? {
            ServerFrame::Connected(c) => {
                self.connected = Some(c.clone());
                Ok(c)
            }
            other => bail!("expected connected, got {other:?}"),
        }
    }

    /// Sends a command with a fresh request id; returns the id.
    pub async fn send(&mut self, cmd: Command) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = self
            .format
            .encode_client(&ClientFrame::new(cmd).with_id(id))?;
        self.send_raw(bytes.to_vec()).await?;
        Ok(id)
    }

    /// Sends bytes as a text (JSON) or binary (bincode) message.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        let message = match self.format {
            WireFormat::Json => Message::Text(String::from_utf8(bytes)?.into()),
            WireFormat::Bincode => Message::Binary(bytes.into()),
        };
        self.ws.send(message).await?;
        Ok(())
    }

    /// Sends a text message as-is.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next data frame, decoded; fails on close or after [`STEP_TIMEOUT`].
    pub async fn recv(&mut self) -> Result<ServerFrame> {
        match self.next_event().await? {
            Event::Frame(frame) => Ok(frame),
            Event::Closed(close) => bail!("connection closed: {close:?}"),
        }
    }

    /// The next data frame or the close frame.
    pub async fn next_event(&mut self) -> Result<Event> {
        loop {
            let message = tokio::time::timeout(STEP_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {STEP_TIMEOUT:?}"))?;
            let bytes = match message {
                None => return Ok(Event::Closed(None)),
                Some(Err(e)) => bail!("websocket error: {e}"),
                Some(Ok(Message::Close(close))) => return Ok(Event::Closed(close)),
                Some(Ok(Message::Text(t))) => bytes::Bytes::from(t),
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(_)) => continue,
            };
            return Ok(Event::Frame(self.format.decode_server(&bytes, usize::MAX)?));
        }
    }

    /// Joins `room` (optionally resuming after `since` in `epoch`) and returns the `joined`
    /// frame; the missed publications follow it.
    pub async fn join(
        &mut self,
        room: &RoomId,
        since: Option<(u64, Option<u64>)>,
    ) -> Result<Joined> {
        let mut join = Join::new(room.clone());
        if let Some((offset, epoch)) = since {
            join = join.since(offset, epoch);
        }
        self.join_with(join).await
    }

    /// Sends a prepared `join` and waits for its answer.
    pub async fn join_with(&mut self, join: Join) -> Result<Joined> {
        let id = self.send(Command::Join(join)).await?;
        match self.recv().await? {
            ServerFrame::Joined(joined) if joined.id == Some(id) => Ok(joined),
            other => bail!("expected joined, got {other:?}"),
        }
    }

    /// The next publication, failing on any other frame.
    pub async fn publication(&mut self) -> Result<Publication> {
        match self.recv().await? {
            ServerFrame::Publication(p) => Ok(p),
            other => bail!("expected a publication, got {other:?}"),
        }
    }

    /// Publications until (and including) a terminal `stream.complete` / `stream.error` /
    /// `stream.cancelled`.
    pub async fn until_terminal(&mut self) -> Result<Vec<Publication>> {
        let mut out = Vec::new();
        loop {
            let p = self.publication().await?;
            let terminal =
                ["stream.complete", "stream.error", "stream.cancelled"].contains(&p.event.as_str());
            out.push(p);
            if terminal {
                return Ok(out);
            }
        }
    }

    /// Drops the TCP connection without a closing handshake, like a killed process.
    pub fn kill(self) {
        drop(self);
    }
}

/// What a client read.
#[derive(Debug)]
pub enum Event {
    /// A decoded server frame.
    Frame(ServerFrame),
    /// The close frame (or end of stream).
    Closed(Option<CloseFrame>),
}

/// Checks that `publications` have contiguous offsets `first..`, one epoch, no duplicate.
pub fn assert_contiguous(publications: &[Publication], first: u64) -> Result<()> {
    for (i, p) in publications.iter().enumerate() {
        let expected = first + i as u64;
        if p.offset != expected {
            bail!(
                "publication #{i} has offset {}, expected {expected}",
                p.offset
            );
        }
        if p.epoch != publications[0].epoch {
            bail!("epoch changed at #{i}");
        }
    }
    Ok(())
}
