use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted room kind, in bytes.
const MAX_KIND_LEN: usize = 32;
/// Longest accepted room name, in bytes.
const MAX_NAME_LEN: usize = 128;

/// A validated room id of the form `kind:name`, such as `execution:run-7` or `conversation:42`.
///
/// The kind is 1–32 characters of `a-z`, `0-9`, `_`, `-`, starting with a letter; it selects the
/// room's policy (history, retention). The name is 1–128 characters of ASCII letters, digits and
/// `_ - . @ =`. Cloning is cheap (a reference count).
///
/// ```
/// use streamgate_protocol::RoomId;
///
/// let room: RoomId = "execution:run-7".parse()?;
/// assert_eq!(room.kind(), "execution");
/// assert_eq!(room.name(), "run-7");
/// assert!("no-colon".parse::<RoomId>().is_err());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId {
    id: Arc<str>,
    colon: u8,
}

/// Why a string is not a valid [`RoomId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    /// There is no `:` separating kind and name.
    #[error("room id must be `kind:name`")]
    MissingSeparator,
    /// The kind is empty, too long, or has characters outside `a-z 0-9 _ -`.
    #[error(
        "room kind must be 1-{MAX_KIND_LEN} characters of a-z, 0-9, '_', '-', starting with a letter"
    )]
    InvalidKind,
    /// The name is empty, too long, or has characters outside the allowed set.
    #[error(
        "room name must be 1-{MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '-', '.', '@', '='"
    )]
    InvalidName,
}

impl RoomId {
    /// Builds a room id from a kind and a name, validating both.
    ///
    /// ```
    /// # use streamgate_protocol::RoomId;
    /// let room = RoomId::new("user", "u1")?;
    /// assert_eq!(room.as_str(), "user:u1");
    /// # Ok::<(), streamgate_protocol::RoomIdError>(())
    /// ```
    pub fn new(kind: &str, name: &str) -> Result<Self, RoomIdError> {
        format!("{kind}:{name}").parse()
    }

    /// The whole id, `kind:name`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The part before the `:`.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.id[..usize::from(self.colon)]
    }

    /// The part after the `:`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.id[usize::from(self.colon) + 1..]
    }
}

fn valid_kind(kind: &str) -> bool {
    let bytes = kind.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_KIND_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'='))
}

impl FromStr for RoomId {
    type Err = RoomIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once(':').ok_or(RoomIdError::MissingSeparator)?;
        if !valid_kind(kind) {
            return Err(RoomIdError::InvalidKind);
        }
        if !valid_name(name) {
            return Err(RoomIdError::InvalidName);
        }
        let colon = u8::try_from(kind.len()).map_err(|_| RoomIdError::InvalidKind)?;
        Ok(Self {
            id: Arc::from(s),
            colon,
        })
    }
}

impl TryFrom<&str> for RoomId {
    type Error = RoomIdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.id)
    }
}

impl AsRef<str> for RoomId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in [
            "execution:1",
            "conversation:42",
            "org:acme",
            "user:u1@x.io",
            "a:b",
            "k-1_x:A.b=c",
        ] {
            let room: RoomId = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(room.as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(
            "nocolon".parse::<RoomId>(),
            Err(RoomIdError::MissingSeparator)
        );
        assert_eq!(":x".parse::<RoomId>(), Err(RoomIdError::InvalidKind));
        assert_eq!("1kind:x".parse::<RoomId>(), Err(RoomIdError::InvalidKind));
        assert_eq!("Kind:x".parse::<RoomId>(), Err(RoomIdError::InvalidKind));
        assert_eq!("kind:".parse::<RoomId>(), Err(RoomIdError::InvalidName));
        assert_eq!("kind:a:b".parse::<RoomId>(), Err(RoomIdError::InvalidName));
        assert_eq!("kind:a b".parse::<RoomId>(), Err(RoomIdError::InvalidName));
        assert_eq!("kind:ü".parse::<RoomId>(), Err(RoomIdError::InvalidName));
        let long = format!("k:{}", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(long.parse::<RoomId>(), Err(RoomIdError::InvalidName));
        let long_kind = format!("{}:a", "k".repeat(MAX_KIND_LEN + 1));
        assert_eq!(long_kind.parse::<RoomId>(), Err(RoomIdError::InvalidKind));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = s.parse::<RoomId>();
        }

        #[test]
        fn valid_ids_round_trip(kind in "[a-z][a-z0-9_-]{0,31}", name in "[A-Za-z0-9_.@=-]{1,128}") {
            let room = RoomId::new(&kind, &name).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(room.kind(), kind.as_str());
            proptest::prop_assert_eq!(room.name(), name.as_str());
        }
    }
}
