#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod error;
mod frame;
mod payload;
mod publication;
mod room;
mod stream;

pub use codec::{BincodeCodec, Codec, DecodeError, EncodeError, JsonCodec, WireFormat};
pub use error::{ErrorBody, ErrorCode};
pub use frame::{
    Ack, Auth, ClientFrame, Command, Connected, Disconnect, ErrorFrame, Join, Joined, Leave, Left,
    Ping, Pong, PresenceDiff, PresenceEntry, PresenceQuery, PresenceSnapshot, PresenceState,
    Refresh, Reply, ServerFrame, TokenExpiring, Typing, UserCommand,
};
pub use payload::{Payload, PayloadError};
pub use publication::{Position, Priority, Publication};
pub use room::{RoomId, RoomIdError};
pub use stream::{Cancelled, Complete, Progress, StreamError, StreamEvent, StreamUpdate, Token};

/// Version of the wire protocol this crate speaks. It is part of the WebSocket subprotocol
/// names (`streamgate.v1.json`, `streamgate.v1.bincode`) and of the `connected` frame.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default upper bound, in bytes, for one inbound frame.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * 1024;
