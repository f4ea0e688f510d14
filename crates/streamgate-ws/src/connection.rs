//! One WebSocket connection: authentication, the reader loop, and the writer task.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use streamgate_core::{
    Credentials, Hub, Outbound, Principal, SessionHandle, SessionOptions, SessionQueue,
};
use streamgate_protocol::{
    ClientFrame, Command, DecodeError, Disconnect, ErrorBody, ErrorCode, ServerFrame, WireFormat,
};
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Error as WsError, Message,
        error::CapacityError,
        protocol::{
            CloseFrame,
            frame::{
                Frame,
                coding::{CloseCode, Data, OpCode},
            },
        },
    },
};
use tracing::Instrument;

use crate::WsConfig;

type Socket = WebSocketStream<TokioIo<Upgraded>>;
type Sink = SplitSink<Socket, Message>;

/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) async fn run(
    socket: Socket,
    hub: Hub,
    config: Arc<WsConfig>,
    credentials: Credentials,
    format: WireFormat,
) {
    let (mut sink, mut stream) = socket.split();
    let (principal, first) =
        match authenticate(&hub, &config, credentials, format, &mut stream).await {
            Ok(authenticated) => authenticated,
            Err(error) => {
                hub.metrics().error(error.code);
                close(
                    &mut sink,
                    format,
                    &Disconnect::new(error.code, error.message),
                )
                .await;
                return;
            }
        };
    let span = tracing::info_span!(
        "session",
        session.id = tracing::field::Empty,
        user.id = principal.user.as_deref().unwrap_or("-"),
        tenant = principal.tenant.as_deref().unwrap_or("-"),
        transport = "ws",
    );
    let ping_ms = u64::try_from(config.ping_interval.as_millis()).unwrap_or(u64::MAX);
    let (session, queue) = hub.open(
        principal,
        SessionOptions::new("ws", format).ping_interval_ms(ping_ms),
    );
    span.record("session.id", tracing::field::display(session.id()));
    async move {
        let mut writer = tokio::spawn(write_loop(sink, queue, hub.clone(), Arc::clone(&config)));
        if let Some(frame) = first {
            session.handle(frame).await;
        }
        let writer_done = tokio::select! {
            () = read_loop(&mut stream, &session, &config, format) => false,
            _ = &mut writer => true,
        };
        // Dropping the handle leaves every room; the writer then sees its queue close.
        drop(session);
        if !writer_done && timeout(CLOSE_GRACE * 2, &mut writer).await.is_err() {
            writer.abort();
        }
    }
    .instrument(span)
    .await;
}

/// Credentials from the handshake, or else from a first `auth` frame within the deadline. A
/// first frame that is not `auth` is authenticated as "no credentials" (anonymous, when the
/// authenticator allows it) and then handled normally.
async fn authenticate(
    hub: &Hub,
    config: &WsConfig,
    credentials: Credentials,
    format: WireFormat,
    stream: &mut futures_util::stream::SplitStream<Socket>,
) -> Result<(Principal, Option<ClientFrame>), ErrorBody> {
    let as_error = |e: streamgate_core::AuthError| ErrorBody::new(e.code(), e.to_string());
    if credentials.token.is_some() {
        return hub
            .authenticate(&credentials)
            .await
            .map(|p| (p, None))
            .map_err(as_error);
    }
    let deadline = Instant::now() + config.auth_timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = match timeout(remaining, stream.next()).await {
            Err(_) => {
                // Silent clients are admitted only if anonymous access is on.
                return hub
                    .authenticate(&credentials)
                    .await
                    .map(|p| (p, None))
                    .map_err(|_| {
                        ErrorBody::new(
                            ErrorCode::AuthFailed,
                            "no credentials before the authentication deadline",
                        )
                    });
            }
            Ok(None | Some(Err(_))) => {
                return Err(ErrorBody::new(ErrorCode::AuthFailed, "connection closed"));
            }
            Ok(Some(Ok(message))) => message,
        };
        let frame = match decode(&message, format, config.max_frame_size) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(ErrorBody::new(e.code(), e.to_string())),
            None => continue,
        };
        if let Command::Auth(auth) = frame.cmd {
            let credentials = Credentials {
                token: Some(auth.token),
                ..credentials
            };
            return hub
                .authenticate(&credentials)
                .await
                .map(|p| (p, None))
                .map_err(as_error);
        }
        return hub
            .authenticate(&credentials)
            .await
            .map(|p| (p, Some(frame)))
            .map_err(as_error);
    }
}

fn data_bytes(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Text(text) => Some(text.as_bytes()),
        Message::Binary(bytes) => Some(bytes),
        _ => None,
    }
}

/// Decodes a data message; `None` for control messages (ping, pong, close).
fn decode(
    message: &Message,
    format: WireFormat,
    max: usize,
) -> Option<Result<ClientFrame, DecodeError>> {
    let bytes: &[u8] = match (message, format) {
        (Message::Text(text), WireFormat::Json) => text.as_bytes(),
        (Message::Binary(bytes), WireFormat::Bincode) => bytes,
        (Message::Text(_), _) => {
            return Some(Err(DecodeError::Malformed(
                "text frame on a binary subprotocol".into(),
            )));
        }
        (Message::Binary(_), _) => {
            return Some(Err(DecodeError::Malformed(
                "binary frame on a text subprotocol".into(),
            )));
        }
        _ => return None,
    };
    Some(format.decode_client(bytes, max))
}

async fn read_loop(
    stream: &mut futures_util::stream::SplitStream<Socket>,
    session: &SessionHandle,
    config: &WsConfig,
    format: WireFormat,
) {
    loop {
        let message = match timeout(config.idle_timeout, stream.next()).await {
            Err(_) => {
                session.close(ErrorCode::IdleTimeout, "no traffic within the idle timeout");
                return;
            }
            Ok(None | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })))) => {
                session.close(
                    ErrorCode::FrameTooLarge,
                    format!("frame of {size} bytes exceeds {max_size}"),
                );
                return;
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "websocket read failed");
                return;
            }
            Ok(Some(Ok(message))) => message,
        };
        match decode(&message, format, config.max_frame_size) {
            None => {}
            Some(Ok(frame)) => session.handle(frame).await,
            Some(Err(e @ DecodeError::TooLarge { .. })) => {
                session.close(ErrorCode::FrameTooLarge, e.to_string());
                return;
            }
            Some(Err(e)) => {
                let id = data_bytes(&message).and_then(|b| format.request_id(b));
                session.send_error(id, ErrorBody::new(e.code(), e.to_string()));
            }
        }
    }
}

/// A data frame from already-encoded bytes: text frames skip a second UTF-8 check, since the
/// JSON codec only produces valid UTF-8.
fn data_message(bytes: Bytes, format: WireFormat) -> Message {
    let data = if format.is_binary() {
        Data::Binary
    } else {
        Data::Text
    };
    Message::Frame(Frame::message(bytes, OpCode::Data(data), true))
}

/// Drains the session queue: takes one item, then whatever else is ready (up to `max_batch`),
/// writes them all and flushes once. Stops when the session closes, saying why.
async fn write_loop(mut sink: Sink, mut queue: SessionQueue, hub: Hub, config: Arc<WsConfig>) {
    let format = queue.format();
    let mut ping = interval(config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut batch = Vec::with_capacity(config.max_batch);
    loop {
        tokio::select! {
            item = queue.recv() => {
                let Some(item) = item else { break };
                batch.push(item);
                while batch.len() < config.max_batch {
                    let Some(item) = queue.try_recv() else { break };
                    batch.push(item);
                }
                let written = tokio::select! {
                    result = write_batch(&mut sink, &batch, format, &hub) => result,
                    () = queue.closed() => Ok(()),
                };
                batch.clear();
                if written.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
    let reason = queue
        .close_reason()
        .unwrap_or_else(|| Disconnect::new(ErrorCode::ShuttingDown, "session ended"));
    close(&mut sink, format, &reason).await;
}

async fn write_batch(
    sink: &mut Sink,
    batch: &[Outbound],
    format: WireFormat,
    hub: &Hub,
) -> Result<(), WsError> {
    let mut published = Vec::new();
    for frame in batch.iter().flat_map(Outbound::frames) {
        match frame.encode(format) {
            Ok(bytes) => sink.feed(data_message(bytes, format)).await?,
            Err(e) => tracing::error!(error = %e, "cannot encode frame"),
        }
        if frame.publication().is_some() {
            published.push(frame.created());
        }
    }
    sink.flush().await?;
    for created in published {
        hub.metrics().record_delivery(created.elapsed());
    }
    Ok(())
}

/// Sends a `disconnect` frame and a close frame whose code is the error's number (1009 for
/// oversize frames), giving a stuck peer at most [`CLOSE_GRACE`].
async fn close(sink: &mut Sink, format: WireFormat, reason: &Disconnect) {
    let code = if reason.code == ErrorCode::FrameTooLarge {
        1009
    } else {
        reason.code.number()
    };
    let frame = ServerFrame::Disconnect(reason.clone());
    let goodbye = async {
        if let Ok(bytes) = format.encode_server(&frame) {
            sink.feed(data_message(bytes, format)).await?;
        }
        let close = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.code.as_str().into(),
        };
        sink.send(Message::Close(Some(close))).await
    };
    if let Ok(Err(e)) = timeout(CLOSE_GRACE, goodbye).await {
        tracing::debug!(error = %e, "close handshake failed");
    }
}
