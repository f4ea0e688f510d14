//! The two wire codecs: JSON text frames and bincode binary frames.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{ClientFrame, Command, ErrorCode, ServerFrame};

/// A frame could not be decoded. Each variant maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the frame.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a frame of this codec at all.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame names an unknown command or frame type.
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// The frame is well-formed but a field is invalid.
    #[error("invalid frame: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// The protocol error code clients receive for this failure.
    ///
    /// ```
    /// use streamgate_protocol::{DecodeError, ErrorCode, WireFormat};
    ///
    /// let err = WireFormat::Json.decode_client(b"{oops", 1024).unwrap_err();
    /// assert_eq!(err.code(), ErrorCode::ProtocolError);
    /// ```
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed(_) => ErrorCode::ProtocolError,
            Self::UnknownType(_) => ErrorCode::UnknownCommand,
            Self::Invalid(_) => ErrorCode::ValidationFailed,
        }
    }
}

/// A frame could not be encoded (a bug or a value that the codec cannot carry).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(String);

/// Turns frames into bytes and back. Implemented by [`JsonCodec`] and [`BincodeCodec`]; a new
/// binary format (postcard …) is one more implementation.
pub trait Codec: Send + Sync {
    /// Encodes a client frame.
    fn encode_client(&self, frame: &ClientFrame) -> Result<Bytes, EncodeError>;
    /// Decodes a client frame (without the size check or validation: see [`WireFormat`]).
    fn decode_client(&self, bytes: &[u8]) -> Result<ClientFrame, DecodeError>;
    /// Encodes a server frame.
    fn encode_server(&self, frame: &ServerFrame) -> Result<Bytes, EncodeError>;
    /// Decodes a server frame (without the size check: see [`WireFormat`]).
    fn decode_server(&self, bytes: &[u8]) -> Result<ServerFrame, DecodeError>;
    /// The request id of a client frame that failed to decode, if it can still be read, so the
    /// error can answer the request.
    fn request_id(&self, bytes: &[u8]) -> Option<u64>;
}

/// JSON frames: one object per frame, with the frame's kind in `type` and its fields beside it,
/// e.g. `{"type":"join","id":1,"room":"execution:1","since":499}`. Absent optional fields are
/// omitted; unknown fields are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// Binary frames: bincode 2 (standard configuration, variable-length integers) over the same
/// types; publication data travels as a byte string holding its JSON text.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

/// The codec a session negotiated, named after its WebSocket subprotocol.
///
/// ```
/// use streamgate_protocol::WireFormat;
///
/// assert_eq!(WireFormat::from_subprotocol("streamgate.v1.bincode"), Some(WireFormat::Bincode));
/// assert_eq!(WireFormat::Json.subprotocol(), "streamgate.v1.json");
/// assert!(WireFormat::Bincode.is_binary());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// [`JsonCodec`], WebSocket text frames.
    Json,
    /// [`BincodeCodec`], WebSocket binary frames.
    Bincode,
}

impl WireFormat {
    /// Both formats.
    pub const ALL: [WireFormat; 2] = [WireFormat::Json, WireFormat::Bincode];

    /// The WebSocket subprotocol name.
    #[must_use]
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => "streamgate.v1.json",
            Self::Bincode => "streamgate.v1.bincode",
        }
    }

    /// The format for a subprotocol name.
    #[must_use]
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.subprotocol() == name.trim())
    }

    /// Whether frames are binary (else UTF-8 text).
    #[must_use]
    pub const fn is_binary(self) -> bool {
        matches!(self, Self::Bincode)
    }

    /// Index for per-format caches (`0` JSON, `1` bincode).
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::Json => 0,
            Self::Bincode => 1,
        }
    }

    /// The codec.
    #[must_use]
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Self::Json => &JsonCodec,
            Self::Bincode => &BincodeCodec,
        }
    }

    /// Encodes a client frame.
    pub fn encode_client(self, frame: &ClientFrame) -> Result<Bytes, EncodeError> {
        self.codec().encode_client(frame)
    }

    /// Encodes a server frame.
    pub fn encode_server(self, frame: &ServerFrame) -> Result<Bytes, EncodeError> {
        self.codec().encode_server(frame)
    }

    /// Decodes and validates an untrusted client frame of at most `max_size` bytes.
    pub fn decode_client(self, bytes: &[u8], max_size: usize) -> Result<ClientFrame, DecodeError> {
        check_size(bytes, max_size)?;
        let frame = self.codec().decode_client(bytes)?;
        frame
            .cmd
            .validate()
            .map_err(|e| DecodeError::Invalid(e.to_string()))?;
        Ok(frame)
    }

    /// Best effort: the request id of a client frame that failed to decode.
    ///
    /// ```
    /// use streamgate_protocol::WireFormat;
    ///
    /// let bad = br#"{"type":"join","id":7,"room":"not a room"}"#;
    /// assert!(WireFormat::Json.decode_client(bad, 1024).is_err());
    /// assert_eq!(WireFormat::Json.request_id(bad), Some(7));
    /// ```
    #[must_use]
    pub fn request_id(self, bytes: &[u8]) -> Option<u64> {
        self.codec().request_id(bytes)
    }

    /// Decodes a server frame of at most `max_size` bytes.
    pub fn decode_server(self, bytes: &[u8], max_size: usize) -> Result<ServerFrame, DecodeError> {
        check_size(bytes, max_size)?;
        self.codec().decode_server(bytes)
    }
}

fn check_size(bytes: &[u8], limit: usize) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}

// ---- JSON ------------------------------------------------------------------------------------

/// Rewrites serde's externally tagged form `{"join": {...}}` into the flat wire form
/// `{"type": "join", ...}`. The types keep the externally tagged form because bincode, which
/// is not self-describing, cannot read internally tagged enums.
fn flatten_tag(value: Value, id: Option<u64>) -> Result<Value, EncodeError> {
    let Value::Object(outer) = value else {
        return Err(EncodeError("frame is not an enum".into()));
    };
    let Some((tag, inner)) = outer.into_iter().next() else {
        return Err(EncodeError("frame is empty".into()));
    };
    let mut flat = Map::new();
    flat.insert("type".into(), Value::String(tag));
    if let Some(id) = id {
        flat.insert("id".into(), Value::from(id));
    }
    match inner {
        Value::Object(fields) => {
            flat.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
        }
        Value::Null => {}
        _ => return Err(EncodeError("frame variant is not a struct".into())),
    }
    Ok(Value::Object(flat))
}

/// The inverse of [`flatten_tag`]; with `take_id`, also removes and returns the top-level `id`.
fn unflatten_tag(
    bytes: &[u8],
    known: &[&str],
    take_id: bool,
) -> Result<(Option<u64>, Value), DecodeError> {
    let mut map: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            DecodeError::Malformed("a frame must be a JSON object".into())
        } else {
            DecodeError::Malformed(e.to_string())
        }
    })?;
    let tag = match map.remove("type") {
        Some(Value::String(tag)) => tag,
        Some(_) => return Err(DecodeError::Invalid("`type` must be a string".into())),
        None => return Err(DecodeError::Malformed("missing `type`".into())),
    };
    if !known.contains(&tag.as_str()) {
        return Err(DecodeError::UnknownType(truncate(&tag, 64)));
    }
    let id =
        if take_id {
            match map.remove("id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    DecodeError::Invalid("`id` must be an unsigned integer".into())
                })?),
            }
        } else {
            None
        };
    let mut outer = Map::new();
    outer.insert(tag, Value::Object(map));
    Ok((id, Value::Object(outer)))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn from_json_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|e| DecodeError::Invalid(e.to_string()))
}

fn to_json_bytes(value: &Value) -> Result<Bytes, EncodeError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| EncodeError(e.to_string()))
}

fn to_json_value<T: Serialize>(value: &T) -> Result<Value, EncodeError> {
    serde_json::to_value(value).map_err(|e| EncodeError(e.to_string()))
}

impl Codec for JsonCodec {
    fn encode_client(&self, frame: &ClientFrame) -> Result<Bytes, EncodeError> {
        to_json_bytes(&flatten_tag(to_json_value(&frame.cmd)?, frame.id)?)
    }

    fn decode_client(&self, bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
        let (id, value) = unflatten_tag(bytes, Command::NAMES, true)?;
        Ok(ClientFrame {
            id,
            cmd: from_json_value(value)?,
        })
    }

    fn encode_server(&self, frame: &ServerFrame) -> Result<Bytes, EncodeError> {
        to_json_bytes(&flatten_tag(to_json_value(frame)?, None)?)
    }

    fn decode_server(&self, bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
        let (_, value) = unflatten_tag(bytes, ServerFrame::NAMES, false)?;
        from_json_value(value)
    }

    fn request_id(&self, bytes: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: Option<u64>,
        }
        serde_json::from_slice::<IdOnly>(bytes).ok()?.id
    }
}

// ---- bincode ---------------------------------------------------------------------------------

/// Upper bound on what one decode may allocate, whatever lengths the input claims.
const BINCODE_LIMIT: usize = 16 * 1024 * 1024;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

fn bincode_encode<T: Serialize>(value: &T) -> Result<Bytes, EncodeError> {
    bincode::serde::encode_to_vec(value, bincode_config())
        .map(Bytes::from)
        .map_err(|e| EncodeError(e.to_string()))
}

fn bincode_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    use bincode::error::DecodeError as E;
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, bincode_config())
        .map_err(|e| match e {
            E::UnexpectedVariant { found, .. } => DecodeError::UnknownType(found.to_string()),
            // serde's derived enums report an out-of-range variant index as a custom message.
            E::OtherString(msg) if msg.contains("expected variant index") => {
                DecodeError::UnknownType(msg)
            }
            E::OtherString(msg) => DecodeError::Invalid(msg),
            E::LimitExceeded => DecodeError::TooLarge {
                size: bytes.len(),
                limit: BINCODE_LIMIT,
            },
            other => DecodeError::Malformed(other.to_string()),
        })?;
    if read != bytes.len() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(value)
}

impl Codec for BincodeCodec {
    fn encode_client(&self, frame: &ClientFrame) -> Result<Bytes, EncodeError> {
        bincode_encode(frame)
    }

    fn decode_client(&self, bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
        bincode_decode(bytes)
    }

    fn encode_server(&self, frame: &ServerFrame) -> Result<Bytes, EncodeError> {
        bincode_encode(frame)
    }

    fn decode_server(&self, bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
        bincode_decode(bytes)
    }

    fn request_id(&self, bytes: &[u8]) -> Option<u64> {
        // The id is the frame's first field.
        bincode::serde::decode_from_slice::<Option<u64>, _>(bytes, bincode_config())
            .ok()?
            .0
    }
}
