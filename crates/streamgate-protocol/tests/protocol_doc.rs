//! Keeps `docs/protocol.md` true.
//!
//! Conventions in the document (also described in its "About the examples" section):
//!
//! - A fenced block tagged ```` ```json client ```` or ```` ```json server ```` holds exactly one
//!   frame as [`WireFormat::Json`] writes it. It must decode, and encoding the decoded frame must
//!   give the block's text (trimmed) byte for byte.
//! - A fenced block tagged ```` ```hex client ```` or ```` ```hex server ```` holds the bincode
//!   bytes, as hex pairs (whitespace ignored), of the frame in the fenced block right before it,
//!   which must be a `json` block of the same direction. The bytes must decode to the same frame,
//!   and encoding it must give the same bytes.
//! - Every name in [`Command::NAMES`] and [`ServerFrame::NAMES`] needs at least one JSON example
//!   followed by its hex; every stream update event needs a `pub` example whose data reads back
//!   as that update.
//! - The table under `### 7.1 Error codes` lists every [`ErrorCode`] with its number, bincode
//!   index and recoverable flag; the table under `### 7.2 Decode failures` gives example frames
//!   (JSON text or bincode hex, in backticks) and the code their decoding fails with.
//!
//! Any other fenced block (untagged, `text`) is an illustration and is not checked.

use std::collections::BTreeSet;
use std::path::Path;

use streamgate_protocol::{
    ClientFrame, Command, DEFAULT_MAX_FRAME_SIZE, DecodeError, ErrorCode, PROTOCOL_VERSION,
    ServerFrame, StreamUpdate, WireFormat,
};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One fenced code block: its info string, its text, and the line its opening fence is on.
struct Fence {
    info: String,
    body: String,
    line: usize,
}

fn fences(doc: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some(Fence {
                        info: info.trim().to_owned(),
                        body: String::new(),
                        line: i + 1,
                    });
                }
            }
            Some(mut fence) => {
                if trimmed == "```" {
                    out.push(fence);
                } else {
                    fence.body.push_str(line);
                    fence.body.push('\n');
                    open = Some(fence);
                }
            }
        }
    }
    if let Some(fence) = open {
        panic!("unclosed fence opened on line {}", fence.line);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Client,
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Hex,
}

/// The checked tag of a fence, `None` for illustrations.
fn tag(fence: &Fence) -> Option<(Encoding, Direction)> {
    let mut words = fence.info.split_whitespace();
    let encoding = match words.next() {
        Some("json") => Encoding::Json,
        Some("hex") => Encoding::Hex,
        _ => return None,
    };
    let direction = match words.next() {
        None if encoding == Encoding::Json => return None,
        Some("client") => Direction::Client,
        Some("server") => Direction::Server,
        other => panic!(
            "line {}: fence `{}` needs `client` or `server`, found {other:?}",
            fence.line, fence.info
        ),
    };
    if let Some(extra) = words.next() {
        panic!("line {}: unexpected `{extra}` in fence tag", fence.line);
    }
    Some((encoding, direction))
}

#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Client(ClientFrame),
    Server(ServerFrame),
}

fn decode(format: WireFormat, direction: Direction, bytes: &[u8]) -> Result<Frame, DecodeError> {
    Ok(match direction {
        Direction::Client => Frame::Client(format.decode_client(bytes, DEFAULT_MAX_FRAME_SIZE)?),
        Direction::Server => Frame::Server(format.decode_server(bytes, DEFAULT_MAX_FRAME_SIZE)?),
    })
}

fn encode(format: WireFormat, frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::Client(f) => format.encode_client(f),
        Frame::Server(f) => format.encode_server(f),
    }
    .unwrap_or_else(|e| panic!("encode {frame:?} as {format:?}: {e}"))
    .to_vec()
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s: String = pair.iter().collect();
            u8::from_str_radix(&s, 16).map_err(|e| format!("`{s}`: {e}"))
        })
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `type` of a JSON frame.
fn json_type(text: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
    match value.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        other => panic!("`{text}`: `type` is {other:?}"),
    }
}

#[test]
fn frame_examples_round_trip_in_both_codecs() {
    let doc = doc();
    // The last fence, when it was a checked JSON example: its direction, frame and type.
    let mut previous: Option<(Direction, Frame, String)> = None;
    let mut client_names = BTreeSet::new();
    let mut server_names = BTreeSet::new();
    let mut stream_events = BTreeSet::new();
    let mut json_examples = 0;

    for fence in fences(&doc) {
        let line = fence.line;
        let Some((encoding, direction)) = tag(&fence) else {
            previous = None;
            continue;
        };
        match encoding {
            Encoding::Json => {
                let text = fence.body.trim();
                let frame = decode(WireFormat::Json, direction, text.as_bytes())
                    .unwrap_or_else(|e| panic!("line {line}: `{text}` does not decode: {e}"));
                let encoded = encode(WireFormat::Json, &frame);
                assert_eq!(
                    String::from_utf8_lossy(&encoded),
                    text,
                    "line {line}: the example is not what the JSON codec writes"
                );
                if let Frame::Server(ServerFrame::Publication(publication)) = &frame
                    && let Some(update) = StreamUpdate::from_publication(publication)
                {
                    let update = update.unwrap_or_else(|e| {
                        panic!(
                            "line {line}: `{}` data does not read back: {e}",
                            publication.event
                        )
                    });
                    let payload = update
                        .to_payload()
                        .unwrap_or_else(|e| panic!("line {line}: {e}"));
                    assert_eq!(
                        payload, publication.data,
                        "line {line}: stream update data is not in canonical form"
                    );
                    stream_events.insert(update.event_name());
                }
                json_examples += 1;
                previous = Some((direction, frame, json_type(text)));
            }
            Encoding::Hex => {
                let Some((json_direction, expected, name)) = previous.take() else {
                    panic!("line {line}: a hex example must follow a tagged json example");
                };
                assert_eq!(
                    json_direction, direction,
                    "line {line}: hex example direction differs from the json example before it"
                );
                let bytes =
                    parse_hex(&fence.body).unwrap_or_else(|e| panic!("line {line}: bad hex: {e}"));
                let frame = decode(WireFormat::Bincode, direction, &bytes)
                    .unwrap_or_else(|e| panic!("line {line}: hex does not decode: {e}"));
                assert_eq!(
                    frame, expected,
                    "line {line}: hex and the json example before it are different frames"
                );
                let encoded = encode(WireFormat::Bincode, &frame);
                assert_eq!(
                    to_hex(&encoded),
                    to_hex(&bytes),
                    "line {line}: the example is not what the bincode codec writes"
                );
                match direction {
                    Direction::Client => client_names.insert(name),
                    Direction::Server => server_names.insert(name),
                };
            }
        }
    }

    assert!(json_examples > 0, "no tagged examples found");
    for name in Command::NAMES {
        assert!(
            client_names.contains(*name),
            "command `{name}` has no json client example followed by hex"
        );
    }
    for name in ServerFrame::NAMES {
        assert!(
            server_names.contains(*name),
            "server frame `{name}` has no json server example followed by hex"
        );
    }
    for event in [
        StreamUpdate::TOKEN,
        StreamUpdate::EVENT,
        StreamUpdate::PROGRESS,
        StreamUpdate::COMPLETE,
        StreamUpdate::ERROR,
    ] {
        assert!(
            stream_events.contains(event),
            "stream update `{event}` has no `pub` example"
        );
    }
}

/// The table rows (cells trimmed, outer pipes dropped) of the section under `heading`.
fn table_rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let section = doc
        .lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| !l.starts_with('#'));
    let rows: Vec<Vec<String>> = section
        .filter_map(|l| {
            let inner = l.trim().strip_prefix('|')?.strip_suffix('|')?;
            Some(inner.split('|').map(|c| c.trim().to_owned()).collect())
        })
        .collect();
    assert!(!rows.is_empty(), "no table under `{heading}`");
    rows
}

fn backticked(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

#[test]
fn error_code_table_matches_the_crate() {
    let doc = doc();
    let mut seen = Vec::new();
    for row in table_rows(&doc, "### 7.1 Error codes") {
        let Some(name) = backticked(&row[0]) else {
            continue;
        };
        let [_, number, index, recoverable, meaning] = row.as_slice() else {
            panic!("error code row {row:?} must have 5 cells");
        };
        let code = ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| panic!("`{name}` is not an error code"));
        assert_eq!(number, &code.number().to_string(), "{name}: number");
        assert_eq!(index, &code.index().to_string(), "{name}: bincode index");
        let flag = if code.recoverable() { "yes" } else { "no" };
        assert_eq!(recoverable, flag, "{name}: recoverable");
        assert!(!meaning.is_empty(), "{name}: meaning");
        seen.push(code);
    }
    assert_eq!(
        seen,
        ErrorCode::ALL,
        "the table must list every code once, in numeric order"
    );
}

#[test]
fn decode_failure_table_matches_the_crate() {
    let doc = doc();
    let mut checked = 0;
    for row in table_rows(&doc, "### 7.2 Decode failures") {
        let [failure, codec, example, code] = row.as_slice() else {
            panic!("decode failure row {row:?} must have 4 cells");
        };
        let (Some(example), Some(code)) = (backticked(example), backticked(code)) else {
            continue;
        };
        let (format, bytes) = match codec.as_str() {
            "JSON" => (WireFormat::Json, example.as_bytes().to_vec()),
            "bincode" => (
                WireFormat::Bincode,
                parse_hex(example).unwrap_or_else(|e| panic!("{failure}: bad hex: {e}")),
            ),
            other => panic!("{failure}: unknown codec `{other}`"),
        };
        let result = format.decode_client(&bytes, DEFAULT_MAX_FRAME_SIZE);
        let err = match result {
            Ok(frame) => panic!("{failure}: `{example}` decodes as {frame:?}"),
            Err(err) => err,
        };
        assert_eq!(
            err.code().as_str(),
            code,
            "{failure}: `{example}` fails with {err}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no decode failure examples checked");
    // The oversize row has no example; check the mapping it states.
    let oversize = vec![b' '; DEFAULT_MAX_FRAME_SIZE + 1];
    for format in WireFormat::ALL {
        let code = format
            .decode_client(&oversize, DEFAULT_MAX_FRAME_SIZE)
            .map_err(|e| e.code());
        assert_eq!(code, Err(ErrorCode::FrameTooLarge), "{format:?}");
    }
}

#[test]
fn transport_constants_are_documented() {
    let doc = doc();
    for format in WireFormat::ALL {
        let name = format!("`{}`", format.subprotocol());
        assert!(doc.contains(&name), "subprotocol {name} is not documented");
    }
    let version = format!("`PROTOCOL_VERSION` = `{PROTOCOL_VERSION}`");
    assert!(doc.contains(&version), "`{version}` is not documented");
    let size = format!("{} KiB", DEFAULT_MAX_FRAME_SIZE / 1024);
    assert!(doc.contains(&size), "`{size}` is not documented");
}
