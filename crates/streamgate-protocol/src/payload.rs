use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};
use serde_json::value::RawValue;

/// Application data carried by publications and commands: always one JSON value, held as its
/// UTF-8 text in shared [`Bytes`] so that fan-out never copies it.
///
/// In the JSON codec the value is embedded as-is; in the bincode codec it travels as a byte
/// string holding the same JSON text. Cloning is a reference-count increment.
///
/// ```
/// use streamgate_protocol::Payload;
///
/// let p = Payload::json(&serde_json::json!({"text": "hi"}))?;
/// assert_eq!(p.as_str(), r#"{"text":"hi"}"#);
/// assert!(Payload::from_json_text("{not json").is_err());
/// # Ok::<(), streamgate_protocol::PayloadError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Bytes);

/// The data is not a single valid JSON value.
#[derive(Debug, thiserror::Error)]
#[error("payload is not valid JSON: {0}")]
pub struct PayloadError(#[from] serde_json::Error);

impl Payload {
    /// JSON `null`.
    #[must_use]
    pub fn null() -> Self {
        Self(Bytes::from_static(b"null"))
    }

    /// Serializes `value` to JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        Ok(Self(Bytes::from(serde_json::to_vec(value)?)))
    }

    /// Takes JSON text after checking that it is exactly one valid JSON value.
    pub fn from_json_text(text: impl Into<Bytes>) -> Result<Self, PayloadError> {
        let bytes = text.into();
        serde_json::from_slice::<&RawValue>(&bytes)?;
        Ok(Self(bytes))
    }

    /// The JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every constructor checks (or produces) valid JSON, which is UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The JSON text as shared bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length of the JSON text in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never true for a constructed payload).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deserializes the JSON into `T`.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PayloadError> {
        Ok(serde_json::from_slice(&self.0)?)
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::null()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", self.as_str())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let raw: &RawValue = serde_json::from_slice(&self.0).map_err(S::Error::custom)?;
            raw.serialize(serializer)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = serde_json::Value::deserialize(deserializer)?;
            Payload::json(&value).map_err(D::Error::custom)
        } else {
            let bytes = <serde_bytes_buf::ByteBuf>::deserialize(deserializer)?;
            Payload::from_json_text(bytes.0).map_err(D::Error::custom)
        }
    }
}

mod serde_bytes_buf {
    use serde::{Deserialize, Deserializer, de};

    /// A byte buffer that asks the deserializer for bytes, not a sequence.
    pub(super) struct ByteBuf(pub(super) Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl de::Visitor<'_> for Visitor {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
            }
            deserializer.deserialize_byte_buf(Visitor)
        }
    }
}
