//! Client → server: Socket.IO events to hub commands.
//!
//! socketioxide spawns one task per incoming event, so two events of one socket may run in
//! any order. Its extractors, however, run synchronously and in arrival order, before that
//! spawn; that is why the command is decoded and queued to the session's reader inside an
//! extractor ([`Queued`]) and the handler itself does nothing.

use std::{convert::Infallible, sync::Arc};

use serde_json::{Map, Value};
use socketioxide::{
    adapter::LocalAdapter,
    extract::{AckSender, Event, TryData},
    handler::{FromMessageParts, Value as PacketValue},
    socket::Socket,
};
use streamgate_protocol::{Command, ErrorBody, ErrorCode, WireFormat};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::events;

/// One command on its way to the session, with the callback that receives its answer.
pub(crate) struct Request {
    pub(crate) ack: AckSender,
    /// Whether the client passed a callback (`AckSender` does nothing otherwise).
    pub(crate) wants_ack: bool,
    /// The decoded command, or why it could not be decoded.
    pub(crate) command: Result<Command, ErrorBody>,
}

/// The per-socket way into the session's reader, kept in the socket's extensions.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) inbound: mpsc::Sender<Request>,
    pub(crate) max_payload: usize,
}

/// Extractor that decodes the event into a command and queues it, in arrival order.
pub(crate) struct Queued;

impl FromMessageParts<LocalAdapter> for Queued {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<LocalAdapter>>,
        value: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let Ok(ack) = AckSender::from_message_parts(socket, value, ack_id);
        let Some(link) = socket.extensions.get::<Link>() else {
            return Ok(Self);
        };
        let command = match Event::from_message_parts(socket, value, ack_id) {
            Ok(Event(event)) => {
                let Ok(TryData(data)) = TryData::<Value>::from_message_parts(socket, value, ack_id);
                decode(&event, data.ok(), link.max_payload)
            }
            Err(_) => Err(ErrorBody::new(
                ErrorCode::ProtocolError,
                "the event has no readable name",
            )),
        };
        let request = Request {
            ack,
            wants_ack: ack_id.is_some(),
            command,
        };
        if let Err(TrySendError::Full(request)) = link.inbound.try_send(request) {
            // Refused at once, outside the session's order: nothing was done.
            let error = ErrorBody::new(ErrorCode::RateLimited, "too many commands in flight")
                .with_retry_after_ms(100);
            if let Err(e) = request.ack.send(&serde_json::json!({ "error": error })) {
                tracing::debug!(error = %e, "cannot refuse a command");
            }
        }
        Ok(Self)
    }
}

/// Turns one event and its payload into a command, through the JSON codec so that limits,
/// validation and error codes are exactly those of `docs/protocol.md`: the payload's fields
/// become the frame's fields, the event name its `type`. A client `id` is ignored (the
/// transport numbers requests itself).
pub(crate) fn decode(event: &str, data: Option<Value>, max: usize) -> Result<Command, ErrorBody> {
    if !events::COMMANDS.contains(&event) {
        return Err(ErrorBody::new(
            ErrorCode::UnknownCommand,
            "unknown command event",
        ));
    }
    let mut fields = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(ErrorBody::new(
                ErrorCode::ValidationFailed,
                "the payload must be an object",
            ));
        }
    };
    fields.remove("id");
    fields.insert("type".into(), Value::String(event.into()));
    let bytes = serde_json::to_vec(&fields)
        .map_err(|_| ErrorBody::new(ErrorCode::ValidationFailed, "unreadable payload"))?;
    WireFormat::Json
        .decode_client(&bytes, max)
        .map(|frame| frame.cmd)
        .map_err(|e| ErrorBody::new(e.code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use streamgate_protocol::{Join, Ping};

    use super::*;

    fn code(event: &str, data: Option<Value>) -> Option<ErrorCode> {
        decode(event, data, 1024).err().map(|e| e.code)
    }

    #[test]
    fn payloads_decode_like_json_frames() {
        let room = "execution:7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            decode(
                "join",
                Some(json!({"id": 9, "room": "execution:7", "since": 41, "epoch": 3})),
                1024
            ),
            Ok(Command::Join(Join::new(room).since(41, Some(3))))
        );
        assert_eq!(decode("ping", None, 1024), Ok(Command::Ping(Ping {})));
        assert_eq!(
            decode("ping", Some(json!({"type": "join"})), 1024),
            Ok(Command::Ping(Ping {}))
        );
    }

    #[test]
    fn every_command_but_auth_is_an_event() {
        for name in Command::NAMES.iter().filter(|n| **n != "auth") {
            assert!(events::COMMANDS.contains(name), "{name} is not an event");
        }
        let room = "conversation:7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            decode("presence", Some(json!({"room": "conversation:7"})), 1024),
            Ok(Command::Presence(streamgate_protocol::PresenceQuery {
                room
            }))
        );
    }

    #[test]
    fn bad_payloads_get_the_codec_error_codes() {
        assert_eq!(code("join", None), Some(ErrorCode::ValidationFailed));
        assert_eq!(
            code("join", Some(json!("execution:7"))),
            Some(ErrorCode::ValidationFailed)
        );
        assert_eq!(
            code("join", Some(json!({"room": "Bad Room"}))),
            Some(ErrorCode::ValidationFailed)
        );
        assert_eq!(
            code("ack", Some(json!({"room": "execution:7", "offset": "7"}))),
            Some(ErrorCode::ValidationFailed)
        );
        assert_eq!(code("subscribe", None), Some(ErrorCode::UnknownCommand));
        assert_eq!(code("auth", None), Some(ErrorCode::UnknownCommand));
        assert_eq!(
            code("join", Some(json!({"room": "x".repeat(2000)}))),
            Some(ErrorCode::FrameTooLarge)
        );
    }
}
