//! Hub behaviour in-process: delivery policies, presence, refresh, metrics, ordering.
use std::time::Duration;

mod common;

use common::{drain, joined, room};

use streamgate_core::{
    Hub, HubConfig, Principal, Publish, RoomPolicy, SessionQueue, StaticTokens, Target, WireFormat,
};
use streamgate_protocol::{
    ClientFrame, Command, ErrorCode, Join, Leave, Payload, Refresh, RoomId, ServerFrame, Typing,
};

fn hub(config: HubConfig) -> Hub {
    let tokens = StaticTokens::new()
        .with_token("u1", Principal::user("u1"))
        .with_token("u1-again", Principal::user("u1"))
        .with_token("u2", Principal::user("u2"));
    Hub::builder(config)
        .authenticator(tokens)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn events(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Publication(p) => Some(p.event.clone()),
            _ => None,
        })
        .collect()
}

fn publish(hub: &Hub, room: &RoomId, event: &str) -> streamgate_core::PublishOutcome {
    hub.publish(room, Publish::new(event, Payload::null()))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_full_queue_drops_volatile_frames_but_closes_on_logged_ones() {
    let hub = hub(HubConfig::default().queue_capacity(4));
    let r = room("conversation:1");
    let (_s, mut q) = joined(&hub, "u1", &r).await;
    for _ in 0..4 {
        publish(&hub, &r, "m");
    }
    let dropped = hub.publish(&r, Publish::new("typing.start", Payload::null()).volatile());
    assert_eq!(dropped.map(|o| o.dropped).ok(), Some(1));
    assert!(
        q.close_reason().is_none(),
        "volatile overflow must not close"
    );
    let outcome = publish(&hub, &r, "m");
    assert_eq!(outcome.overflowed, 1);
    assert_eq!(
        q.close_reason().map(|d| d.code),
        Some(ErrorCode::SlowConsumer)
    );
    assert!(
        q.recv().await.is_none(),
        "a closing queue yields nothing more"
    );
    assert!(hub.stats().queued <= 4);
    let m = hub.metrics().snapshot();
    assert_eq!((m.dropped, m.errors_for(ErrorCode::SlowConsumer)), (1, 1));
}

#[tokio::test]
async fn targeted_publications_reach_only_their_targets_and_are_not_logged() {
    let hub = hub(HubConfig::default());
    let r = room("conversation:2");
    let (s1, mut q1) = joined(&hub, "u1", &r).await;
    let (_s2, mut q2) = joined(&hub, "u2", &r).await;
    let to_u2 = Target {
        users: vec!["u2".into()],
        sessions: vec![],
    };
    let outcome = hub
        .publish(&r, Publish::new("dm", Payload::null()).to(to_u2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((outcome.position.offset, outcome.delivered), (0, 1));
    let to_s1 = Target {
        users: vec![],
        sessions: vec![s1.id()],
    };
    hub.publish(&r, Publish::new("note", Payload::null()).to(to_s1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events(&drain(&mut q1)), ["note"]);
    assert_eq!(events(&drain(&mut q2)), ["dm"]);
    // Nothing was logged: the next logged publication is offset 1.
    assert_eq!(publish(&hub, &r, "m").position.offset, 1);
}

#[tokio::test]
async fn presence_counts_users_not_sessions() {
    let hub =
        hub(HubConfig::default().room_kind("conversation", RoomPolicy::default().presence(true)));
    let r = room("conversation:3");
    let (_watcher, mut wq) = joined(&hub, "u2", &r).await;
    hub.flush_presence();
    drain(&mut wq);
    let (tab1, _q1) = joined(&hub, "u1", &r).await;
    let (tab2, _q2) = joined(&hub, "u1", &r).await;
    // Diffs are batched per room; flushing sends what the window collected.
    let diffs = |q: &mut SessionQueue| {
        hub.flush_presence();
        drain(q)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Presence(d) => Some((d.joined.len(), d.left.len())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        diffs(&mut wq),
        [(1, 0)],
        "a second tab is not a new presence"
    );
    tab1.handle(ClientFrame::new(Command::Leave(Leave { room: r.clone() })))
        .await;
    assert_eq!(diffs(&mut wq), []);
    drop(tab2);
    assert_eq!(
        diffs(&mut wq),
        [(0, 1)],
        "the last session leaving makes the user offline"
    );
}

#[tokio::test]
async fn refresh_swaps_the_principal_only_for_the_same_user() {
    let hub = hub(HubConfig::default());
    let principal = hub
        .authenticate(&streamgate_core::Credentials::bearer("u1"))
        .await;
    let (session, mut queue) = hub.connect(
        principal.unwrap_or_else(|e| panic!("{e}")),
        "test",
        WireFormat::Json,
    );
    drain(&mut queue);
    session
        .handle(
            ClientFrame::new(Command::Refresh(Refresh {
                token: "u1-again".into(),
            }))
            .with_id(1),
        )
        .await;
    session
        .handle(ClientFrame::new(Command::Refresh(Refresh { token: "u2".into() })).with_id(2))
        .await;
    session
        .handle(
            ClientFrame::new(Command::Refresh(Refresh {
                token: "bogus".into(),
            }))
            .with_id(3),
        )
        .await;
    let frames = drain(&mut queue);
    assert!(
        matches!(&frames[0], ServerFrame::Reply(r) if r.id == 1),
        "{frames:?}"
    );
    assert!(
        matches!(&frames[1], ServerFrame::Error(e) if e.id == Some(2) && e.error.code == ErrorCode::AuthFailed)
    );
    assert!(
        matches!(&frames[2], ServerFrame::Error(e) if e.id == Some(3) && e.error.code == ErrorCode::AuthFailed)
    );
    assert_eq!(session.principal().user.as_deref(), Some("u1"));
    assert!(
        queue.close_reason().is_none(),
        "a refused refresh keeps the session"
    );
}

#[tokio::test]
async fn typing_needs_membership_and_is_volatile() {
    let hub = hub(HubConfig::default());
    let r = room("conversation:4");
    let (s1, mut q1) = joined(&hub, "u1", &r).await;
    let (_s2, mut q2) = joined(&hub, "u2", &r).await;
    s1.handle(ClientFrame::new(Command::TypingStart(Typing { room: r.clone() })).with_id(5))
        .await;
    let seen = drain(&mut q2);
    assert!(
        matches!(&seen[0], ServerFrame::Publication(p) if p.event == "typing.start" && p.offset == 0)
    );
    drain(&mut q1);
    let other = room("conversation:5");
    s1.handle(ClientFrame::new(Command::TypingStart(Typing { room: other })).with_id(6))
        .await;
    assert!(
        matches!(&drain(&mut q1)[0], ServerFrame::Error(e) if e.error.code == ErrorCode::NotJoined)
    );
}

#[test]
fn deliveries_are_recorded_through_the_metrics_facade() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    metrics::with_local_recorder(&recorder, || {
        let hub = hub(HubConfig::default());
        let r = room("org:m");
        let _members = runtime
            .block_on(async { (joined(&hub, "u1", &r).await, joined(&hub, "u2", &r).await) });
        publish(&hub, &r, "m");
        publish(&hub, &r, "m");
    });
    let out = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == "streamgate_messages_out_total")
        .map(|(.., value)| value);
    assert_eq!(out, Some(metrics_util::debugging::DebugValue::Counter(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_never_reorder_a_room() {
    let hub = hub(HubConfig::default().queue_capacity(10_000));
    let r = room("execution:race");
    let (_s, mut q) = joined(&hub, "u1", &r).await;
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let (hub, r) = (hub.clone(), r.clone());
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    publish(&hub, &r, "m");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap_or_else(|_| panic!("publisher panicked"));
    }
    let offsets: Vec<u64> = drain(&mut q)
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Publication(p) => Some(p.offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, (1..=4_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn shutdown_closes_sessions_recoverably_and_refuses_publications() {
    let hub = hub(HubConfig::default());
    let r = room("org:bye");
    let (_s, q) = joined(&hub, "u1", &r).await;
    hub.shutdown();
    let reason = q
        .close_reason()
        .unwrap_or_else(|| panic!("no close reason"));
    assert!(reason.code == ErrorCode::ShuttingDown && reason.reconnect);
    assert!(hub.publish(&r, Publish::new("m", Payload::null())).is_err());
}

#[tokio::test(start_paused = true)]
async fn repeated_auth_failures_from_one_address_are_slowed_down() {
    let hub = hub(HubConfig {
        auth_failure_threshold: 3,
        auth_failure_max_delay: Duration::from_millis(300),
        ..HubConfig::default()
    });
    let from = |ip: &str, token: &str| streamgate_core::Credentials {
        token: Some(token.into()),
        remote_addr: Some(
            format!("{ip}:4000")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    };
    // How long (in the runtime's paused clock) one attempt waits before its answer.
    let attempt = |credentials: streamgate_core::Credentials| {
        let hub = hub.clone();
        async move {
            let start = tokio::time::Instant::now();
            let result = hub.authenticate(&credentials).await;
            (result.is_ok(), start.elapsed())
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt(from("10.0.0.1", "nope")).await,
            (false, Duration::ZERO)
        );
    }
    assert_eq!(
        attempt(from("10.0.0.1", "nope")).await,
        (false, Duration::from_millis(100))
    );
    assert_eq!(
        attempt(from("10.0.0.1", "nope")).await,
        (false, Duration::from_millis(200))
    );
    assert_eq!(
        attempt(from("10.0.0.1", "nope")).await,
        (false, Duration::from_millis(300))
    );
    assert_eq!(
        attempt(from("10.0.0.1", "nope")).await,
        (false, Duration::from_millis(300)),
        "capped"
    );
    // Other addresses are not affected.
    assert_eq!(
        attempt(from("10.0.0.2", "u1")).await,
        (true, Duration::ZERO)
    );
    // A success (after the wait) clears the address.
    assert_eq!(
        attempt(from("10.0.0.1", "u1")).await,
        (true, Duration::from_millis(300))
    );
    assert_eq!(
        attempt(from("10.0.0.1", "nope")).await,
        (false, Duration::ZERO)
    );
    assert_eq!(hub.throttled_addresses(), 1);
}

#[tokio::test]
async fn a_full_room_refuses_new_members_but_not_rejoins() {
    let hub = hub(HubConfig::default().room_kind("small", RoomPolicy::default().max_members(2)));
    let r = room("small:1");
    let (a, mut qa) = joined(&hub, "u1", &r).await;
    let (_b, _qb) = joined(&hub, "u2", &r).await;
    let (c, mut qc) = hub.connect(Principal::user("u3"), "test", WireFormat::Json);
    drain(&mut qc);
    c.handle(ClientFrame::new(Command::Join(Join::new(r.clone()))).with_id(1))
        .await;
    let frames = drain(&mut qc);
    assert!(
        matches!(&frames[0], ServerFrame::Error(e) if e.id == Some(1) && e.error.code == ErrorCode::RoomFull && e.error.recoverable),
        "{frames:?}"
    );
    // A member joining again (new filter) is not a new member.
    a.handle(ClientFrame::new(Command::Join(Join::new(r.clone()))).with_id(2))
        .await;
    assert!(matches!(&drain(&mut qa)[0], ServerFrame::Joined(j) if j.id == Some(2)));
    // Once someone leaves, there is room again.
    drop(a);
    c.handle(ClientFrame::new(Command::Join(Join::new(r.clone()))).with_id(3))
        .await;
    assert!(matches!(&drain(&mut qc)[0], ServerFrame::Joined(j) if j.id == Some(3)));
}
