//! The connection limit at admission, the history read API, and history snapshots that carry
//! epochs and offsets across a restart.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{drain, publications, room};
use streamgate_core::{
    Hub, HubConfig, MemoryHistory, Principal, Publish, Recovery, RoomPolicy, SnapshotError,
    WireFormat,
};
use streamgate_protocol::{ClientFrame, Command, ErrorCode, Join, Publication, ServerFrame};

fn offsets(recovery: &Recovery) -> Vec<u64> {
    recovery
        .frames
        .iter()
        .filter_map(|f| f.publication())
        .map(|p| p.offset)
        .collect()
}

fn texts(recovery: &Recovery) -> Vec<String> {
    recovery
        .frames
        .iter()
        .filter_map(|f| f.publication())
        .map(|p| p.data.decode::<String>().unwrap())
        .collect()
}

#[test]
fn admit_refuses_at_the_connection_limit_until_a_session_closes() {
    let hub = Hub::builder(HubConfig::default().max_connections(2))
        .build()
        .unwrap();
    let address: Option<SocketAddr> = Some("192.0.2.7:40000".parse().unwrap());
    assert!(hub.admit(address).is_ok());
    let first = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    assert!(hub.admit(None).is_ok());
    let second = hub.connect(Principal::user("u2"), "test", WireFormat::Json);

    // At the limit: refused whether the address is known or not.
    for address in [address, None] {
        let refused = hub.admit(address).expect_err("at the limit");
        assert_eq!(refused.code, ErrorCode::ServerOverloaded);
        assert!(refused.recoverable);
        assert_eq!(refused.retry_after_ms, Some(1000));
        assert!(refused.message.contains("connection limit"), "{refused:?}");
    }
    assert_eq!(
        hub.metrics()
            .snapshot()
            .errors_for(ErrorCode::ServerOverloaded),
        2
    );

    // A session closes: room for one more.
    drop(first);
    assert_eq!(hub.stats().sessions, 1);
    assert!(hub.admit(address).is_ok());
    let _third = hub.connect(Principal::user("u3"), "test", WireFormat::Json);
    assert!(hub.admit(None).is_err());
    drop(second);
    assert!(hub.admit(None).is_ok());
}

#[test]
fn the_limit_is_checked_before_the_rate_limiter() {
    /// Counts every per-address check, and refuses them all.
    struct Counting(Arc<AtomicUsize>);
    impl streamgate_core::RateLimiter for Counting {
        fn check(&self, _: &streamgate_core::RateKey<'_>) -> Result<(), Duration> {
            Ok(())
        }
        fn check_connect(&self, _: std::net::IpAddr) -> Result<(), Duration> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs(5))
        }
    }
    let asked = Arc::new(AtomicUsize::new(0));
    let hub = Hub::builder(HubConfig::default().max_connections(1))
        .rate_limiter(Counting(Arc::clone(&asked)))
        .build()
        .unwrap();
    let address = Some("192.0.2.8:40000".parse().unwrap());
    assert_eq!(hub.admit(address).unwrap_err().code, ErrorCode::RateLimited);
    let _open = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    let refused = hub.admit(address).unwrap_err();
    assert_eq!(refused.code, ErrorCode::ServerOverloaded);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "the limiter was asked at the limit"
    );
    let snapshot = hub.metrics().snapshot();
    assert_eq!(snapshot.errors_for(ErrorCode::RateLimited), 1);
    assert_eq!(snapshot.errors_for(ErrorCode::ServerOverloaded), 1);
}

#[test]
fn no_limit_by_default_and_zero_is_refused() {
    let hub = Hub::builder(HubConfig::default()).build().unwrap();
    let _sessions: Vec<_> = (0..50)
        .map(|_| hub.connect(Principal::user("u"), "test", WireFormat::Json))
        .collect();
    assert!(hub.admit(None).is_ok());
    let error = Hub::builder(HubConfig::default().max_connections(0))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("max_connections"), "{error}");
}

#[test]
fn history_reads_like_a_resume_without_a_session() {
    let config = HubConfig::default().room_kind(
        "short",
        RoomPolicy::default().history(3, Duration::from_secs(60)),
    );
    let hub = Hub::builder(config).build().unwrap();
    let r = room("short:1");
    for n in 1..=5 {
        hub.publish(&r, Publish::json("e", &format!("m{n}")).unwrap())
            .unwrap();
    }
    let epoch = hub.position(&r).epoch;
    let read = hub.history(&r, 2, Some(epoch));
    assert!(read.recovered);
    assert_eq!(offsets(&read), [3, 4, 5]);
    assert_eq!(texts(&read), ["m3", "m4", "m5"]);
    assert_eq!((read.position.epoch, read.position.offset), (epoch, 5));
    // The kind keeps 3: offset 2 is gone, so reading after 1 cannot recover.
    assert!(!hub.history(&r, 1, None).recovered);
    assert!(hub.history(&r, 5, None).recovered && hub.history(&r, 5, None).frames.is_empty());
    assert!(!hub.history(&r, 6, None).recovered);
    let other_epoch = hub.history(&r, 2, Some(epoch + 1));
    assert!(!other_epoch.recovered && other_epoch.frames.is_empty());
    assert_eq!(other_epoch.position.offset, 5);
}

/// Publishes `n` texts `"{prefix}{i}"` into `room`.
fn publish_n(hub: &Hub, room: &streamgate_protocol::RoomId, prefix: &str, n: usize) {
    for i in 1..=n {
        hub.publish(room, Publish::json("e", &format!("{prefix}{i}")).unwrap())
            .unwrap();
    }
}

#[tokio::test]
async fn a_snapshot_carries_epochs_and_offsets_into_a_new_hub() {
    let (a, b) = (room("execution:a"), room("conversation:b"));
    let history = MemoryHistory::new();
    let hub = Hub::builder(HubConfig::default())
        .history(history.clone())
        .build()
        .unwrap();
    publish_n(&hub, &a, "a", 5);
    publish_n(&hub, &b, "b", 5);
    let (epoch_a, epoch_b) = (hub.position(&a).epoch, hub.position(&b).epoch);

    let mut snapshot = Vec::new();
    assert_eq!(history.save(&mut snapshot).unwrap(), 10);
    let text = String::from_utf8(snapshot.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], r#"{"format":"streamgate-history","version":1}"#);
    let line: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    // Rooms in order: conversation:b first.
    assert_eq!(line["room"], "conversation:b");
    assert_eq!(
        (line["epoch"].as_u64(), line["top"].as_u64()),
        (Some(epoch_b), Some(5))
    );
    assert_eq!(line["entries"][0]["offset"], 1);
    assert_eq!(line["entries"][0]["data"], "b1");
    drop(hub);

    // A restarted process.
    let restored = MemoryHistory::new();
    assert_eq!(restored.load(&snapshot[..]).unwrap(), 10);
    let hub = Hub::builder(HubConfig::default())
        .history(restored)
        .build()
        .unwrap();
    for (r, epoch, prefix) in [(&a, epoch_a, "a"), (&b, epoch_b, "b")] {
        let read = hub.history(r, 2, Some(epoch));
        assert!(read.recovered);
        assert_eq!(offsets(&read), [3, 4, 5]);
        assert_eq!(texts(&read), [3, 4, 5].map(|i| format!("{prefix}{i}")));
        let next = hub
            .publish(r, Publish::json("e", &"after the restart").unwrap())
            .unwrap();
        assert_eq!((next.position.epoch, next.position.offset), (epoch, 6));
    }

    // A client resumes across the restart: the missed ones, then live.
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    session
        .handle(ClientFrame::new(Command::Join(
            Join::new(a.clone()).since(4, Some(epoch_a)),
        )))
        .await;
    let frames = drain(&mut queue);
    let joined = frames.iter().find_map(|f| match f {
        ServerFrame::Joined(j) => Some(j.clone()),
        _ => None,
    });
    let joined = joined.expect("joined");
    assert!(joined.recovered);
    assert_eq!(
        (joined.epoch, joined.offset, joined.missed),
        (epoch_a, 6, 2)
    );
    let replayed: Vec<u64> = publications(&frames).iter().map(|p| p.offset).collect();
    assert_eq!(replayed, [5, 6]);

    // A room the snapshot did not have gets an epoch no loaded room has.
    let fresh = hub.position(&room("execution:new")).epoch;
    assert!(fresh > epoch_a.max(epoch_b), "{fresh}");
}

#[test]
fn loading_replaces_a_room_and_keeps_others() {
    let (a, b) = (room("execution:a"), room("execution:b"));
    let source = MemoryHistory::new();
    let hub = Hub::builder(HubConfig::default())
        .history(source.clone())
        .build()
        .unwrap();
    publish_n(&hub, &a, "old", 2);
    let mut snapshot = Vec::new();
    source.save(&mut snapshot).unwrap();

    let target = MemoryHistory::new();
    let hub = Hub::builder(HubConfig::default())
        .history(target.clone())
        .build()
        .unwrap();
    publish_n(&hub, &a, "replaced", 7);
    publish_n(&hub, &b, "kept", 1);
    assert_eq!(target.load(&snapshot[..]).unwrap(), 2);
    let read = hub.history(&a, 0, None);
    assert_eq!(texts(&read), ["old1", "old2"]);
    assert_eq!(read.position.offset, 2);
    assert_eq!(texts(&hub.history(&b, 0, None)), ["kept1"]);
}

#[test]
fn loaded_publications_keep_their_age() {
    let r = room("short:1");
    let policy = RoomPolicy::default().history(100, Duration::from_secs(60));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Offsets 1 and 2 two hours old, 3 a second old, 4 from a clock ahead of ours.
    let entries: Vec<Publication> = [
        (1, now_ms - 7_200_000),
        (2, now_ms - 7_200_000),
        (3, now_ms - 1_000),
        (4, now_ms + 60_000),
    ]
    .into_iter()
    .map(|(offset, ts)| Publication {
        room: r.clone(),
        offset,
        epoch: 77,
        id: format!("p{offset}"),
        event: "e".into(),
        data: streamgate_protocol::Payload::null(),
        ts,
        priority: streamgate_protocol::Priority::Normal,
        ack: false,
    })
    .collect();
    let mut snapshot = Vec::new();
    writeln!(snapshot, r#"{{"format":"streamgate-history","version":1}}"#).unwrap();
    let line = serde_json::json!({"room": r, "epoch": 77, "top": 4, "entries": entries});
    writeln!(snapshot, "{line}").unwrap();

    let history = MemoryHistory::new();
    assert_eq!(history.load(&snapshot[..]).unwrap(), 4);
    let hub = Hub::builder(HubConfig::default().room_kind("short", policy))
        .history(history)
        .build()
        .unwrap();
    // The two-hour-old ones are past the kind's 60 s TTL (unless the monotonic clock started
    // less than two hours ago, when they count as published now).
    let read = hub.history(&r, 2, Some(77));
    assert!(read.recovered);
    assert_eq!(offsets(&read), [3, 4]);
    let since_start = hub.history(&r, 0, Some(77));
    let clock_reaches_back = std::time::Instant::now()
        .checked_sub(Duration::from_secs(7_300))
        .is_some();
    if clock_reaches_back {
        assert!(!since_start.recovered, "expired publications were kept");
    } else {
        assert_eq!(offsets(&since_start), [1, 2, 3, 4]);
    }
    assert_eq!(hub.position(&r).offset, 4);
}

#[test]
fn loading_moves_the_epoch_clock_past_every_loaded_epoch() {
    // An epoch ahead of the wall clock (a snapshot from a node whose clock ran fast).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ahead = now_ms + 86_400_000;
    let snapshot =
        format!("{HEADER}\n{{\"room\":\"r:a\",\"epoch\":{ahead},\"top\":9,\"entries\":[]}}\n");
    let history = MemoryHistory::new();
    assert_eq!(history.load(snapshot.as_bytes()).unwrap(), 0);
    let hub = Hub::builder(HubConfig::default())
        .history(history)
        .build()
        .unwrap();
    let r = room("r:a");
    // An empty loaded room still continues its offsets.
    assert_eq!(hub.position(&r).offset, 9);
    let next = hub.publish(&r, Publish::json("e", &1).unwrap()).unwrap();
    assert_eq!((next.position.epoch, next.position.offset), (ahead, 10));
    let fresh = hub.position(&room("r:new")).epoch;
    assert!(fresh > ahead, "{fresh} reuses or precedes {ahead}");
}

const HEADER: &str = r#"{"format":"streamgate-history","version":1}"#;

fn load(text: &str) -> Result<usize, SnapshotError> {
    MemoryHistory::new().load(text.as_bytes())
}

fn line_of(error: Result<usize, SnapshotError>) -> (usize, String) {
    match error {
        Err(SnapshotError::Line { line, message }) => (line, message),
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn a_malformed_line_is_an_error_naming_it() {
    let good = r#"{"room":"r:a","epoch":5,"top":0,"entries":[]}"#;
    let (line, message) = line_of(load(&format!("{HEADER}\n{good}\n{{\"room\":\"r:b\"\n")));
    assert_eq!(line, 3, "{message}");
    let error = load(&format!("{HEADER}\n{good}\n\n{good}x\n")).unwrap_err();
    assert!(error.to_string().starts_with("line 4: "), "{error}");

    for (bad, says) in [
        (
            r#"{"room":"not a room","epoch":5,"top":0,"entries":[]}"#,
            "room",
        ),
        (r#"{"room":"r:a","epoch":0,"top":0,"entries":[]}"#, "epoch"),
        (
            r#"{"room":"r:a","epoch":18446744073709551615,"top":0,"entries":[]}"#,
            "epoch",
        ),
        (
            r#"{"room":"r:a","epoch":5,"top":18446744073709551615,"entries":[]}"#,
            "top",
        ),
        (
            r#"{"room":"r:a","epoch":5,"top":0,"entries":[],"extra":1}"#,
            "extra",
        ),
        (r#"{"room":"r:a","epoch":5,"entries":[]}"#, "top"),
    ] {
        let (line, message) = line_of(load(&format!("{HEADER}\n{bad}\n")));
        assert_eq!(line, 2);
        assert!(message.contains(says), "{bad}: {message}");
    }
}

#[test]
fn publications_must_fit_their_room_log() {
    let publication = |room: &str, epoch: u64, offset: u64| {
        serde_json::json!({"room": room, "offset": offset, "epoch": epoch, "id": "x", "event": "e",
            "data": null, "ts": 0, "priority": "normal", "ack": false})
    };
    let room_line = |top: u64, entries: Vec<serde_json::Value>| {
        serde_json::json!({"room": "r:a", "epoch": 5, "top": top, "entries": entries}).to_string()
    };
    for (line, says) in [
        // More kept than ever published.
        (
            room_line(1, vec![publication("r:a", 5, 1), publication("r:a", 5, 2)]),
            "latest offset",
        ),
        // A gap: two kept up to 3 are 2 and 3.
        (
            room_line(3, vec![publication("r:a", 5, 1), publication("r:a", 5, 3)]),
            "at offset 2",
        ),
        // A repeat.
        (
            room_line(4, vec![publication("r:a", 5, 3), publication("r:a", 5, 3)]),
            "at offset 4",
        ),
        // Not ending at top.
        (
            room_line(3, vec![publication("r:a", 5, 1), publication("r:a", 5, 2)]),
            "offset 1 does",
        ),
        // Another room, another epoch.
        (room_line(1, vec![publication("r:b", 5, 1)]), "r:b"),
        (room_line(1, vec![publication("r:a", 6, 1)]), "epoch 6"),
    ] {
        let (at, message) = line_of(load(&format!("{HEADER}\n{line}\n")));
        assert_eq!(at, 2);
        assert!(message.contains(says), "{line}: {message}");
    }
    let fits = room_line(3, vec![publication("r:a", 5, 2), publication("r:a", 5, 3)]);
    assert_eq!(load(&format!("{HEADER}\n{fits}\n")).unwrap(), 2);
    // The same room twice.
    let (at, message) = line_of(load(&format!("{HEADER}\n{fits}\n{fits}\n")));
    assert_eq!(at, 3);
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn a_wrong_or_missing_header_is_an_error() {
    for text in [
        "",
        "\n",
        r#"{"format":"streamgate-history","version":2}"#,
        r#"{"format":"other","version":1}"#,
        r#"{"format":"streamgate-history"}"#,
        r#"{"room":"r:a","epoch":5,"top":0,"entries":[]}"#,
        "streamgate-history v1",
    ] {
        let error = load(text).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Header(_)),
            "{text:?}: {error:?}"
        );
        assert!(error.to_string().starts_with("line 1: "), "{error}");
    }
}

#[test]
fn unreadable_input_names_the_line_and_loads_nothing() {
    let history = MemoryHistory::new();
    let hub = Hub::builder(HubConfig::default())
        .history(history.clone())
        .build()
        .unwrap();
    let r = room("r:a");
    publish_n(&hub, &r, "m", 3);
    let before = hub.position(&r);

    // A good line replacing r:a, then bytes that are not UTF-8.
    let mut input = format!("{HEADER}\n").into_bytes();
    input.extend_from_slice(br#"{"room":"r:a","epoch":5,"top":0,"entries":[]}"#);
    input.extend_from_slice(b"\n\xff\xfe\n");
    match history.load(&input[..]) {
        Err(SnapshotError::Io { line: 3, .. }) => {}
        other => panic!("expected a read error on line 3, got {other:?}"),
    }
    // Nothing was applied.
    assert_eq!(hub.position(&r), before);
    assert_eq!(texts(&hub.history(&r, 0, None)), ["m1", "m2", "m3"]);
}
