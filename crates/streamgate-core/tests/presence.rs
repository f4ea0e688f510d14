//! Presence in-process: users not sessions, online and away, typing that ends on its own, the
//! presence query, and diffs batched per room and window.
//!
//! Every test runs on a paused Tokio clock: time moves only when a test advances it or waits
//! for something, so the batching windows (and what lands in which) are deterministic.

use std::{collections::BTreeMap, time::Duration};

mod common;

use common::{drain, room};

use streamgate_core::{
    Action, Authorizer, Hub, HubConfig, Principal, RoomPolicy, SessionHandle, SessionQueue,
    WireFormat,
};
use streamgate_protocol::{
    ClientFrame, Command, ErrorCode, Join, Leave, PresenceDiff, PresenceEntry, PresenceQuery,
    PresenceSnapshot, PresenceState, Publication, RoomId, ServerFrame, Typing,
};

const WINDOW: Duration = Duration::from_millis(50);

fn config() -> HubConfig {
    HubConfig::default()
        .room_kind("conversation", RoomPolicy::default().presence(true))
        .presence_batch_window(WINDOW)
        .presence_away_after(Duration::from_secs(60))
        .typing_timeout(Duration::from_secs(5))
}

fn hub(config: HubConfig) -> Hub {
    Hub::builder(config)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn send(session: &SessionHandle, cmd: Command) {
    session.handle(ClientFrame::new(cmd).with_id(1)).await;
}

async fn connect_and_join(hub: &Hub, user: &str, room: &RoomId) -> (SessionHandle, SessionQueue) {
    let (session, queue) = hub.connect(Principal::user(user), "test", WireFormat::Json);
    send(&session, Command::Join(Join::new(room.clone()))).await;
    (session, queue)
}

fn diffs(queue: &mut SessionQueue) -> Vec<PresenceDiff> {
    drain(queue)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Presence(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn typing_events(frames: &[ServerFrame]) -> Vec<(String, Option<String>)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Publication(p) if p.event.starts_with("typing.") => {
                Some((p.event.clone(), user_of(p)))
            }
            _ => None,
        })
        .collect()
}

fn user_of(p: &Publication) -> Option<String> {
    let data: serde_json::Value = serde_json::from_str(p.data.as_str()).ok()?;
    data["user"].as_str().map(str::to_owned)
}

/// What a client knows after applying `diffs` in order to an empty member list.
fn fold(diffs: &[PresenceDiff]) -> BTreeMap<String, PresenceState> {
    let mut members = BTreeMap::new();
    for diff in diffs {
        for e in diff.joined.iter().chain(&diff.updated) {
            members.insert(e.user.clone(), e.state);
        }
        for e in &diff.left {
            members.remove(&e.user);
        }
    }
    members
}

fn entries(list: &[(&str, PresenceState)]) -> Vec<PresenceEntry> {
    list.iter()
        .map(|(user, state)| PresenceEntry::new(*user, *state))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn two_sessions_of_one_user_are_one_member_until_both_close() {
    let hub = hub(config());
    let r = room("conversation:1");
    let (_watcher, mut wq) = connect_and_join(&hub, "u2", &r).await;
    hub.flush_presence();
    drain(&mut wq);

    let (tab1, _q1) = connect_and_join(&hub, "u1", &r).await;
    let (tab2, _q2) = connect_and_join(&hub, "u1", &r).await;
    assert_eq!(hub.flush_presence(), 1);
    let seen = diffs(&mut wq);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].joined,
        [PresenceEntry::online("u1")],
        "a second tab is not a second member"
    );
    assert_eq!(
        hub.presence(&r),
        [PresenceEntry::online("u1"), PresenceEntry::online("u2")]
    );

    drop(tab1);
    assert_eq!(hub.flush_presence(), 0, "one tab left: still online");
    assert!(diffs(&mut wq).is_empty());
    assert_eq!(hub.presence(&r).len(), 2);

    drop(tab2);
    hub.flush_presence();
    let seen = diffs(&mut wq);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].left, [PresenceEntry::online("u1")]);
    assert!(seen[0].joined.is_empty() && seen[0].updated.is_empty());
    assert_eq!(hub.presence(&r), [PresenceEntry::online("u2")]);
}

#[tokio::test(start_paused = true)]
async fn leaving_counts_like_disconnecting_and_a_quick_visit_cancels_out() {
    let hub = hub(config());
    let r = room("conversation:2");
    let (_watcher, mut wq) = connect_and_join(&hub, "u2", &r).await;
    hub.flush_presence();
    drain(&mut wq);

    // Joined and left within one window: nobody needs to hear about it.
    let (visitor, _vq) = connect_and_join(&hub, "u1", &r).await;
    send(&visitor, Command::Leave(Leave { room: r.clone() })).await;
    assert_eq!(hub.flush_presence(), 0);
    assert!(diffs(&mut wq).is_empty());

    send(&visitor, Command::Join(Join::new(r.clone()))).await;
    hub.flush_presence();
    send(&visitor, Command::Leave(Leave { room: r.clone() })).await;
    hub.flush_presence();
    let seen = diffs(&mut wq);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].joined, [PresenceEntry::online("u1")]);
    assert_eq!(seen[1].left, [PresenceEntry::online("u1")]);
}

#[tokio::test(start_paused = true)]
async fn diffs_go_out_on_their_own_within_a_window() {
    let hub = hub(config());
    let r = room("conversation:3");
    let (_watcher, mut wq) = connect_and_join(&hub, "u2", &r).await;
    let (_u1, _q1) = connect_and_join(&hub, "u1", &r).await;
    let started = tokio::time::Instant::now();
    let diff = loop {
        let item = tokio::time::timeout(Duration::from_secs(5), wq.recv())
            .await
            .unwrap_or_else(|_| panic!("no presence frame"))
            .unwrap_or_else(|| panic!("session closed"));
        if let ServerFrame::Presence(diff) = item.frames()[0].frame() {
            break diff.clone();
        }
    };
    assert!(started.elapsed() <= WINDOW, "sent by the hub's own task");
    assert_eq!(
        diff.joined,
        [PresenceEntry::online("u1"), PresenceEntry::online("u2")]
    );
}

#[tokio::test(start_paused = true)]
async fn typing_ends_on_its_own_and_a_repeat_only_renews() {
    let hub = hub(config());
    let r = room("conversation:4");
    let (typist, _tq) = connect_and_join(&hub, "u1", &r).await;
    let (_reader, mut rq) = connect_and_join(&hub, "u2", &r).await;
    drain(&mut rq);

    send(&typist, Command::TypingStart(Typing { room: r.clone() })).await;
    assert_eq!(
        typing_events(&drain(&mut rq)),
        [("typing.start".to_owned(), Some("u1".to_owned()))]
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    send(&typist, Command::TypingStart(Typing { room: r.clone() })).await;
    let renewed = tokio::time::Instant::now();
    assert!(
        typing_events(&drain(&mut rq)).is_empty(),
        "a renewal sends nothing"
    );

    // Nobody sends typing_stop: the hub does, `typing_timeout` after the renewal.
    let stop = loop {
        let item = tokio::time::timeout(Duration::from_secs(30), rq.recv())
            .await
            .unwrap_or_else(|_| panic!("typing never stopped"))
            .unwrap_or_else(|| panic!("session closed"));
        let frames: Vec<ServerFrame> = item.frames().iter().map(|f| f.frame().clone()).collect();
        if let Some(event) = typing_events(&frames).pop() {
            break event;
        }
    };
    assert_eq!(stop, ("typing.stop".to_owned(), Some("u1".to_owned())));
    assert!(renewed.elapsed() >= Duration::from_secs(5));

    // A stop without a typing to end sends nothing.
    send(&typist, Command::TypingStop(Typing { room: r.clone() })).await;
    assert!(typing_events(&drain(&mut rq)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn typing_ends_when_the_typists_last_session_leaves() {
    let hub = hub(config());
    let r = room("conversation:5");
    let (tab1, _q1) = connect_and_join(&hub, "u1", &r).await;
    let (tab2, _q2) = connect_and_join(&hub, "u1", &r).await;
    let (_reader, mut rq) = connect_and_join(&hub, "u2", &r).await;
    send(&tab1, Command::TypingStart(Typing { room: r.clone() })).await;
    drain(&mut rq);

    drop(tab1);
    assert!(
        typing_events(&drain(&mut rq)).is_empty(),
        "another tab of the typist is still here"
    );
    send(&tab2, Command::Leave(Leave { room: r.clone() })).await;
    assert_eq!(
        typing_events(&drain(&mut rq)),
        [("typing.stop".to_owned(), Some("u1".to_owned()))]
    );
}

#[tokio::test(start_paused = true)]
async fn typing_reaches_only_the_rooms_members() {
    let hub = hub(config());
    let r = room("conversation:6");
    let elsewhere = room("conversation:7");
    let (typist, _tq) = connect_and_join(&hub, "u1", &r).await;
    let (_member, mut mq) = connect_and_join(&hub, "u2", &r).await;
    let (_outsider, mut oq) = connect_and_join(&hub, "u3", &elsewhere).await;
    drain(&mut mq);
    drain(&mut oq);
    send(&typist, Command::TypingStart(Typing { room: r.clone() })).await;
    assert_eq!(typing_events(&drain(&mut mq)).len(), 1);
    assert!(typing_events(&drain(&mut oq)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_user_is_away_when_all_their_sessions_are_idle_and_back_on_activity() {
    let hub = hub(config());
    let r = room("conversation:8");
    let (tab1, _q1) = connect_and_join(&hub, "u1", &r).await;
    let (tab2, _q2) = connect_and_join(&hub, "u1", &r).await;
    let (_watcher, mut wq) = connect_and_join(&hub, "u2", &r).await;
    let mut seen = Vec::new();

    tokio::time::advance(Duration::from_secs(40)).await;
    // One tab does something; a `typing_stop` with nothing to stop is activity all the same.
    send(&tab1, Command::TypingStop(Typing { room: r.clone() })).await;
    tokio::time::advance(Duration::from_secs(25)).await;
    hub.check_presence();
    seen.extend(diffs(&mut wq));
    assert_eq!(
        fold(&seen),
        BTreeMap::from([
            ("u1".to_owned(), PresenceState::Online),
            ("u2".to_owned(), PresenceState::Away),
        ]),
        "u1 has an active tab; u2 did nothing for 65 s"
    );

    tokio::time::advance(Duration::from_secs(40)).await;
    hub.check_presence();
    seen.extend(diffs(&mut wq));
    assert_eq!(fold(&seen)["u1"], PresenceState::Away, "both tabs idle");
    assert_eq!(
        hub.presence(&r),
        entries(&[("u1", PresenceState::Away), ("u2", PresenceState::Away)])
    );

    // Activity in either tab brings the user back at once, without waiting for a check.
    send(&tab2, Command::TypingStart(Typing { room: r.clone() })).await;
    assert_eq!(hub.presence(&r)[0], PresenceEntry::online("u1"));
    hub.flush_presence();
    let back = diffs(&mut wq);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].updated, [PresenceEntry::online("u1")]);
}

#[tokio::test(start_paused = true)]
async fn the_presence_query_answers_members_with_states_and_typists() {
    struct NoSecrets;
    impl Authorizer for NoSecrets {
        fn authorize(&self, _: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
            match action {
                Action::Join(room) if room.name() == "secret" => Err(ErrorCode::RoomAccessDenied),
                _ => Ok(()),
            }
        }
    }
    let hub = Hub::builder(config())
        .authorizer(NoSecrets)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let r = room("conversation:9");
    let (u1, mut q1) = connect_and_join(&hub, "u1", &r).await;
    let (_u2, _q2) = connect_and_join(&hub, "u2", &r).await;
    send(&u1, Command::TypingStart(Typing { room: r.clone() })).await;
    drain(&mut q1);

    let query = |room: &RoomId| {
        ClientFrame::new(Command::Presence(PresenceQuery { room: room.clone() })).with_id(42)
    };
    u1.handle(query(&r)).await;
    let snapshot = match drain(&mut q1).as_slice() {
        [ServerFrame::Reply(reply)] if reply.id == 42 => {
            serde_json::from_str::<PresenceSnapshot>(reply.data.as_str())
                .unwrap_or_else(|e| panic!("{e}"))
        }
        other => panic!("expected one reply, got {other:?}"),
    };
    assert_eq!(
        snapshot,
        PresenceSnapshot {
            room: r.clone(),
            users: vec![PresenceEntry::online("u1"), PresenceEntry::online("u2")],
            typing: vec!["u1".into()],
        }
    );

    let code = |frames: Vec<ServerFrame>| match frames.as_slice() {
        [ServerFrame::Error(e)] if e.id == Some(42) => Some(e.error.code),
        _ => None,
    };
    u1.handle(query(&room("conversation:10"))).await;
    assert_eq!(code(drain(&mut q1)), Some(ErrorCode::NotJoined));
    u1.handle(query(&room("conversation:secret"))).await;
    assert_eq!(code(drain(&mut q1)), Some(ErrorCode::RoomAccessDenied));
}

/// 200 members join, then a third of them leave while as many newcomers join and some visitors
/// come and go: each member gets a few presence frames, not one per change.
#[tokio::test(start_paused = true)]
async fn a_churning_room_of_200_gets_batched_diffs() {
    const MEMBERS: usize = 200;
    let hub = hub(config().queue_capacity(4096));
    let r = room("conversation:big");
    let mut sessions = Vec::new();
    let mut changes = 0;
    // Joins arrive in four bursts, 20 ms apart: two or three windows.
    for burst in 0..4 {
        for i in 0..MEMBERS / 4 {
            sessions.push(connect_and_join(&hub, &format!("m{}", burst * 50 + i), &r).await);
            changes += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(WINDOW * 2).await;
    // Churn: the first 70 leave, 70 newcomers join, 30 visitors join and leave at once.
    let leaving: Vec<_> = sessions.drain(..70).collect();
    drop(leaving);
    changes += 70;
    for i in 0..70 {
        sessions.push(connect_and_join(&hub, &format!("n{i}"), &r).await);
        changes += 1;
    }
    for i in 0..30 {
        drop(connect_and_join(&hub, &format!("v{i}"), &r).await);
        changes += 2;
    }
    tokio::time::sleep(WINDOW * 2).await;

    let per_member: Vec<usize> = sessions
        .iter_mut()
        .map(|(_, queue)| diffs(queue))
        .enumerate()
        .map(|(i, seen)| {
            // Those who stayed from the start saw the churn as one diff, without the visitors.
            if i < MEMBERS - 70 {
                let churn = seen
                    .last()
                    .unwrap_or_else(|| panic!("member {i} saw nothing"));
                assert_eq!((churn.left.len(), churn.joined.len()), (70, 70));
                assert!(churn.joined.iter().all(|e| e.user.starts_with('n')));
            }
            seen.len()
        })
        .collect();
    let most = per_member.iter().copied().max().unwrap_or_default();
    println!(
        "{changes} presence changes; presence frames per member: max {most}, per member {per_member:?}"
    );
    assert_eq!(hub.presence(&r).len(), MEMBERS);
    assert!(
        most <= 5,
        "diffs are batched, got {most} frames for one member"
    );
}
