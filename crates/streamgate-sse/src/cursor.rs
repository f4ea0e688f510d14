//! The resume cursor carried in the SSE `id:` field: every room's position, in one line.

use std::{collections::BTreeMap, fmt, str::FromStr};

use streamgate_protocol::{Position, RoomId, RoomIdError};

/// The cursor format version written by this crate.
const VERSION: &str = "1";
/// Longest cursor accepted, in bytes: 64 rooms of the longest id (161 bytes) with two 20-digit
/// numbers and separators stay below it, and it fits the header limits of common proxies.
pub const MAX_CURSOR_LEN: usize = 16 * 1024;
/// Most rooms in one cursor (and the upper bound of `SseConfig::max_rooms`).
pub const MAX_CURSOR_ROOMS: usize = 64;
/// Longest decimal `u64`.
const MAX_DIGITS: usize = 20;

/// Where a connection is in each of its rooms: the `(epoch, offset)` of the last logged
/// publication delivered per room, or the room's position when it was joined.
///
/// Its text form is what the server sends as the SSE `id:` field, and what a client gives back
/// as `Last-Event-ID` (or the `last_event_id` query parameter) to resume every room at once:
///
/// ```text
/// cursor = version *( ";" room-id "~" epoch "~" offset )
/// version = "1"
/// epoch, offset = decimal u64 without sign or leading zeros
/// ```
///
/// Rooms are written in sorted order. Parsing is strict: anything else is a [`CursorError`].
///
/// ```
/// use streamgate_protocol::{Position, RoomId};
/// use streamgate_sse::Cursor;
///
/// let mut cursor = Cursor::new();
/// let run: RoomId = "execution:7".parse()?;
/// cursor.set(&run, Position { epoch: 1733, offset: 42 });
/// cursor.set(&"org:acme".parse()?, Position { epoch: 1733, offset: 3 });
/// let text = cursor.to_string();
/// assert_eq!(text, "1;execution:7~1733~42;org:acme~1733~3");
///
/// let back: Cursor = text.parse()?;
/// assert_eq!(back, cursor);
/// assert_eq!(back.get(&run), Some(Position { epoch: 1733, offset: 42 }));
/// assert!("1;execution:7~1733".parse::<Cursor>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    rooms: BTreeMap<RoomId, Position>,
}

/// Why a string is not a valid [`Cursor`]. Entries are numbered from 1 in the order written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR_LEN`].
    #[error("cursor is longer than {MAX_CURSOR_LEN} bytes")]
    TooLong,
    /// The version is not `1`.
    #[error("unsupported cursor version (expected `1`)")]
    UnsupportedVersion,
    /// An entry is not `room~epoch~offset`.
    #[error("cursor entry {entry} is not `room~epoch~offset`")]
    MalformedEntry {
        /// The entry's number.
        entry: usize,
    },
    /// An entry's room id is invalid.
    #[error("cursor entry {entry}: {source}")]
    InvalidRoom {
        /// The entry's number.
        entry: usize,
        /// Why the room id is invalid.
        source: RoomIdError,
    },
    /// An entry's epoch or offset is not a canonical decimal `u64`.
    #[error("cursor entry {entry}: epoch and offset must be decimal numbers")]
    InvalidNumber {
        /// The entry's number.
        entry: usize,
    },
    /// A room appears twice.
    #[error("cursor entry {entry} repeats a room")]
    DuplicateRoom {
        /// The entry's number.
        entry: usize,
    },
    /// More than [`MAX_CURSOR_ROOMS`] rooms.
    #[error("cursor has more than {MAX_CURSOR_ROOMS} rooms")]
    TooManyRooms,
}

impl Cursor {
    /// A cursor without rooms (`1`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The position recorded for `room`.
    #[must_use]
    pub fn get(&self, room: &RoomId) -> Option<Position> {
        self.rooms.get(room).copied()
    }

    /// Records `room`'s position, replacing any earlier one.
    pub fn set(&mut self, room: &RoomId, position: Position) {
        match self.rooms.get_mut(room) {
            Some(p) => *p = position,
            None => {
                self.rooms.insert(room.clone(), position);
            }
        }
    }

    /// Forgets `room`; returns its position if it was recorded.
    pub fn remove(&mut self, room: &RoomId) -> Option<Position> {
        self.rooms.remove(room)
    }

    /// How many rooms are recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The rooms and their positions, in room order.
    pub fn iter(&self) -> impl Iterator<Item = (&RoomId, Position)> {
        self.rooms.iter().map(|(r, p)| (r, *p))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(VERSION)?;
        for (room, p) in &self.rooms {
            write!(f, ";{room}~{}~{}", p.epoch, p.offset)?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong);
        }
        let mut entries = s.split(';');
        if entries.next() != Some(VERSION) {
            return Err(CursorError::UnsupportedVersion);
        }
        let mut rooms = BTreeMap::new();
        for (i, entry) in entries.enumerate() {
            let entry_no = i + 1;
            if entry_no > MAX_CURSOR_ROOMS {
                return Err(CursorError::TooManyRooms);
            }
            let mut fields = entry.split('~');
            let (Some(room), Some(epoch), Some(offset), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(CursorError::MalformedEntry { entry: entry_no });
            };
            let room: RoomId = room.parse().map_err(|source| CursorError::InvalidRoom {
                entry: entry_no,
                source,
            })?;
            let number = |s: &str| number(s).ok_or(CursorError::InvalidNumber { entry: entry_no });
            let position = Position {
                epoch: number(epoch)?,
                offset: number(offset)?,
            };
            if rooms.insert(room, position).is_some() {
                return Err(CursorError::DuplicateRoom { entry: entry_no });
            }
        }
        Ok(Self { rooms })
    }
}

/// A canonical decimal `u64`: digits only, no sign, no leading zero (except `0` itself).
fn number(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= MAX_DIGITS
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    #[test]
    fn round_trips() {
        let mut cursor = Cursor::new();
        assert_eq!(cursor.to_string(), "1");
        assert_eq!("1".parse::<Cursor>(), Ok(Cursor::new()));

        cursor.set(
            &room("org:acme"),
            Position {
                epoch: 1,
                offset: 0,
            },
        );
        cursor.set(
            &room("execution:run-7"),
            Position {
                epoch: u64::MAX,
                offset: u64::MAX,
            },
        );
        cursor.set(
            &room("user:u1@x.io"),
            Position {
                epoch: 1_733_000_000_000,
                offset: 42,
            },
        );
        let longest = format!("{}:{}", "k".repeat(32), &"N_.@=-".repeat(22)[..128]);
        cursor.set(
            &room(&longest),
            Position {
                epoch: 9,
                offset: 9,
            },
        );
        let text = cursor.to_string();
        assert!(!text.contains(['\n', '\r', '\0']));
        assert_eq!(text.parse::<Cursor>(), Ok(cursor.clone()));
        assert_eq!(cursor.len(), 4);

        // Rooms are sorted, so equal cursors have equal text.
        assert!(text.starts_with("1;execution:run-7~18446744073709551615~18446744073709551615;"));

        assert_eq!(
            cursor.remove(&room("org:acme")),
            Some(Position {
                epoch: 1,
                offset: 0
            })
        );
        assert_eq!(cursor.get(&room("org:acme")), None);
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
    }

    #[test]
    fn the_largest_cursor_parses() {
        let mut cursor = Cursor::new();
        for i in 0..MAX_CURSOR_ROOMS {
            let name = format!("{i:0>128}");
            let position = Position {
                epoch: u64::MAX,
                offset: u64::MAX,
            };
            cursor.set(&room(&format!("{}:{name}", "k".repeat(32))), position);
        }
        let text = cursor.to_string();
        assert!(text.len() <= MAX_CURSOR_LEN, "{}", text.len());
        assert_eq!(text.parse::<Cursor>(), Ok(cursor));
    }

    #[test]
    fn bad_cursors_are_refused() {
        use CursorError::*;
        let too_many = format!(
            "1{}",
            (0..=MAX_CURSOR_ROOMS)
                .map(|i| format!(";r:{i}~1~1"))
                .collect::<String>()
        );
        let too_long = format!("1;r:{}~1~1", "a".repeat(MAX_CURSOR_LEN));
        let cases: &[(&str, CursorError)] = &[
            ("", UnsupportedVersion),
            ("2", UnsupportedVersion),
            ("1 ", UnsupportedVersion),
            (" 1", UnsupportedVersion),
            ("01", UnsupportedVersion),
            ("v1;r:a~1~1", UnsupportedVersion),
            ("execution:7~1~1", UnsupportedVersion),
            ("1;", MalformedEntry { entry: 1 }),
            ("1;;r:a~1~1", MalformedEntry { entry: 1 }),
            ("1;r:a~1~1;", MalformedEntry { entry: 2 }),
            ("1;r:a", MalformedEntry { entry: 1 }),
            ("1;r:a~1", MalformedEntry { entry: 1 }),
            ("1;r:a~1~2~3", MalformedEntry { entry: 1 }),
            ("1,r:a~1~1", UnsupportedVersion),
            (
                "1;R:a~1~1",
                InvalidRoom {
                    entry: 1,
                    source: RoomIdError::InvalidKind,
                },
            ),
            (
                "1;nocolon~1~1",
                InvalidRoom {
                    entry: 1,
                    source: RoomIdError::MissingSeparator,
                },
            ),
            (
                "1;r:a b~1~1",
                InvalidRoom {
                    entry: 1,
                    source: RoomIdError::InvalidName,
                },
            ),
            ("1;r:a~~1", InvalidNumber { entry: 1 }),
            ("1;r:a~1~", InvalidNumber { entry: 1 }),
            ("1;r:a~+1~1", InvalidNumber { entry: 1 }),
            ("1;r:a~-1~1", InvalidNumber { entry: 1 }),
            ("1;r:a~01~1", InvalidNumber { entry: 1 }),
            ("1;r:a~1~1.0", InvalidNumber { entry: 1 }),
            ("1;r:a~1~0x10", InvalidNumber { entry: 1 }),
            ("1;r:a~1~18446744073709551616", InvalidNumber { entry: 1 }),
            ("1;r:a~1~123456789012345678901", InvalidNumber { entry: 1 }),
            ("1;r:a~1~1;r:b~1~1 ", InvalidNumber { entry: 2 }),
            ("1;r:a~1~1;r:a~2~2", DuplicateRoom { entry: 2 }),
            (&too_many, TooManyRooms),
            (&too_long, TooLong),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Cursor>().as_ref(), Err(expected), "{text:.60}");
        }
    }
}
