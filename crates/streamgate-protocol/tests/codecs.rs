//! Round-trip and robustness tests for both codecs.

use proptest::prelude::*;
use streamgate_protocol::*;

fn room() -> impl Strategy<Value = RoomId> {
    ("[a-z][a-z0-9_-]{0,8}", "[A-Za-z0-9_.@=-]{1,16}")
        .prop_map(|(k, n)| RoomId::new(&k, &n).unwrap_or_else(|e| panic!("{e}")))
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::null()),
        any::<i64>().prop_map(|n| Payload::json(&n).unwrap_or_default()),
        ".{0,24}".prop_map(|s| Payload::json(
            &serde_json::json!({ "text": s, "n": [1, 2.5, null] })
        )
        .unwrap_or_default()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .é\"\\\\]{1,24}"
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        text().prop_map(|token| Command::Auth(Auth { token })),
        (
            room(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(proptest::collection::vec("[a-z.]{1,12}", 0..4))
        )
            .prop_map(|(room, since, epoch, events)| Command::Join(Join {
                room,
                since,
                epoch,
                events
            })),
        room().prop_map(|room| Command::Leave(Leave { room })),
        (
            room(),
            any::<u64>(),
            proptest::option::of("[a-z0-9-]{1,16}")
        )
            .prop_map(|(room, offset, pub_id)| Command::Ack(Ack {
                room,
                offset,
                pub_id
            })),
        Just(Command::Ping(Ping {})),
        room().prop_map(|room| Command::TypingStart(Typing { room })),
        room().prop_map(|room| Command::TypingStop(Typing { room })),
        ("[a-z.]{1,20}", proptest::option::of(room()), payload())
            .prop_map(|(name, room, data)| Command::Command(UserCommand { name, room, data })),
        text().prop_map(|token| Command::Refresh(Refresh { token })),
        room().prop_map(|room| Command::Presence(PresenceQuery { room })),
    ]
}

fn presence_entry() -> impl Strategy<Value = PresenceEntry> {
    (
        text(),
        prop_oneof![Just(PresenceState::Online), Just(PresenceState::Away)],
    )
        .prop_map(|(user, state)| PresenceEntry { user, state })
}

fn publication() -> impl Strategy<Value = Publication> {
    (
        room(),
        any::<u64>(),
        any::<u64>(),
        text(),
        text(),
        payload(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(room, offset, epoch, id, event, data, ts, ack)| Publication {
                room,
                offset,
                epoch,
                id,
                event,
                data,
                ts,
                priority: Priority::High,
                ack,
            },
        )
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (text(), proptest::option::of(text()), any::<u64>()).prop_map(|(session, user, ping)| {
            ServerFrame::Connected(Connected {
                session,
                user,
                version: PROTOCOL_VERSION,
                ping_interval_ms: ping,
            })
        }),
        publication().prop_map(ServerFrame::Publication),
        (
            proptest::option::of(any::<u64>()),
            room(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(id, room, epoch, offset, recovered, missed)| {
                ServerFrame::Joined(Joined {
                    id,
                    room,
                    epoch,
                    offset,
                    recovered,
                    missed,
                })
            }),
        (proptest::option::of(any::<u64>()), room())
            .prop_map(|(id, room)| ServerFrame::Left(Left { id, room })),
        proptest::option::of(any::<u64>()).prop_map(|id| ServerFrame::Pong(Pong { id })),
        (any::<u64>(), payload()).prop_map(|(id, data)| ServerFrame::Reply(Reply { id, data })),
        (
            proptest::option::of(any::<u64>()),
            error_code(),
            text(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(id, code, msg, retry)| {
                let mut body = ErrorBody::new(code, msg);
                body.retry_after_ms = retry;
                ServerFrame::error(id, body)
            }),
        (
            room(),
            proptest::collection::vec(presence_entry(), 0..3),
            proptest::collection::vec(presence_entry(), 0..3),
            proptest::collection::vec(presence_entry(), 0..3)
        )
            .prop_map(|(room, joined, left, updated)| {
                ServerFrame::Presence(PresenceDiff {
                    room,
                    joined,
                    left,
                    updated,
                })
            }),
        (error_code(), text())
            .prop_map(|(code, reason)| ServerFrame::Disconnect(Disconnect::new(code, reason))),
        (any::<u64>(), any::<u64>()).prop_map(|(expires_at, in_ms)| {
            ServerFrame::TokenExpiring(TokenExpiring { expires_at, in_ms })
        }),
    ]
}

const MAX: usize = 1 << 20;

proptest! {
    #[test]
    fn client_frames_round_trip(cmd in command(), id in proptest::option::of(any::<u64>())) {
        let frame = ClientFrame { id, cmd };
        for format in WireFormat::ALL {
            let bytes = format.encode_client(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = format.decode_client(&bytes, MAX).map_err(|e| TestCaseError::fail(format!("{format:?}: {e}")))?;
            prop_assert_eq!(&back, &frame);
        }
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        for format in WireFormat::ALL {
            let bytes = format.encode_server(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = format.decode_server(&bytes, MAX).map_err(|e| TestCaseError::fail(format!("{format:?}: {e}")))?;
            prop_assert_eq!(&back, &frame);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in WireFormat::ALL {
            let _ = format.decode_client(&bytes, MAX);
            let _ = format.decode_server(&bytes, MAX);
        }
    }

    #[test]
    fn mutated_frames_never_panic(cmd in command(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        for format in WireFormat::ALL {
            let mut bytes = format.encode_client(&ClientFrame::new(cmd.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?.to_vec();
            for (at, b) in &flips {
                let i = at % bytes.len();
                bytes[i] = *b;
            }
            let _ = format.decode_client(&bytes, MAX);
        }
    }

    #[test]
    fn arbitrary_json_objects_never_panic(ty in "[a-z_]{0,12}", key in "[a-z]{1,8}", n in any::<i64>()) {
        let raw = format!(r#"{{"type":"{ty}","{key}":{n},"room":"x:y","id":-1}}"#);
        let _ = WireFormat::Json.decode_client(raw.as_bytes(), MAX);
    }
}

#[test]
fn json_wire_shape_is_flat_and_tagged() {
    let join = ClientFrame::new(Command::Join(
        Join::new("execution:1".parse().unwrap_or_else(|e| panic!("{e}"))).since(499, Some(3)),
    ))
    .with_id(5);
    let bytes = WireFormat::Json.encode_client(&join).unwrap_or_default();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap_or_default(),
        r#"{"type":"join","id":5,"room":"execution:1","since":499,"epoch":3}"#
    );
    let ping = WireFormat::Json.decode_client(br#"{"type":"ping"}"#, MAX);
    assert_eq!(ping, Ok(ClientFrame::new(Command::Ping(Ping {}))));
}

#[test]
fn decode_errors_map_to_documented_codes() {
    let json = |s: &str| {
        WireFormat::Json
            .decode_client(s.as_bytes(), 64)
            .map_err(|e| e.code())
    };
    assert_eq!(json("{not json"), Err(ErrorCode::ProtocolError));
    assert_eq!(json("[1,2]"), Err(ErrorCode::ProtocolError));
    assert_eq!(json(r#"{"room":"a:b"}"#), Err(ErrorCode::ProtocolError));
    assert_eq!(
        json(r#"{"type":"explode"}"#),
        Err(ErrorCode::UnknownCommand)
    );
    assert_eq!(
        json(r#"{"type":"join","room":"bad room"}"#),
        Err(ErrorCode::ValidationFailed)
    );
    assert_eq!(json(r#"{"type":"join"}"#), Err(ErrorCode::ValidationFailed));
    assert_eq!(
        json(r#"{"type":"auth","token":""}"#),
        Err(ErrorCode::ValidationFailed)
    );
    assert_eq!(
        json(&format!(
            r#"{{"type":"auth","token":"{}"}}"#,
            "x".repeat(80)
        )),
        Err(ErrorCode::FrameTooLarge)
    );
    // bincode: variant index 200 does not exist.
    assert_eq!(
        WireFormat::Bincode
            .decode_client(&[0, 200], 64)
            .map_err(|e| e.code()),
        Err(ErrorCode::UnknownCommand)
    );
    assert_eq!(
        WireFormat::Bincode
            .decode_client(&[], 64)
            .map_err(|e| e.code()),
        Err(ErrorCode::ProtocolError)
    );
}

#[test]
fn progress_out_of_range_is_invalid() {
    use validator::Validate as _;
    let p = Progress {
        value: 1.5,
        stage: None,
        message: None,
    };
    assert!(p.validate().is_err());
    let p = Progress {
        value: 0.5,
        stage: Some("retrieval".into()),
        message: None,
    };
    assert!(p.validate().is_ok());
}

#[test]
fn stream_updates_read_back_from_publications() {
    let update = StreamUpdate::Progress(Progress {
        value: 0.25,
        stage: Some("plan".into()),
        message: None,
    });
    let publication = Publication {
        room: "execution:1".parse().unwrap_or_else(|e| panic!("{e}")),
        offset: 1,
        epoch: 1,
        id: "p".into(),
        event: update.event_name().into(),
        data: update.to_payload().unwrap_or_default(),
        ts: 0,
        priority: Priority::Normal,
        ack: false,
    };
    let back = StreamUpdate::from_publication(&publication).and_then(Result::ok);
    assert_eq!(back, Some(update));
}

#[test]
fn presence_frames_without_states_still_decode() {
    // Frames as written before states and `updated` existed.
    let old = br#"{"type":"presence","room":"conversation:1","joined":[{"user":"u2"}],"left":[]}"#;
    let Ok(ServerFrame::Presence(diff)) = WireFormat::Json.decode_server(old, MAX) else {
        panic!("an old presence frame must decode");
    };
    assert_eq!(diff.joined, [PresenceEntry::online("u2")]);
    assert!(diff.updated.is_empty());
}
