//! Acknowledged delivery (retries, reports) and offline queues, in-process.
#![allow(clippy::expect_used)] // Tests fail loudly on purpose.
use std::time::Duration;

mod common;

use common::{drain, join, joined, publications, room};

use streamgate_core::{
    Action, Authorizer, Hub, HubConfig, Principal, Publish, SessionHandle, Target, WireFormat,
};
use streamgate_protocol::{
    Ack, ClientFrame, Command, ErrorCode, Payload, Publication, RoomId, ServerFrame,
};

fn hub(config: HubConfig) -> Hub {
    Hub::builder(config)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn acking(timeout_ms: u64, attempts: u32) -> HubConfig {
    HubConfig::default().acks(Duration::from_millis(timeout_ms), attempts)
}

fn text(p: &Publication) -> String {
    p.data.decode::<String>().unwrap_or_default()
}

fn to_user(user: &str) -> Target {
    Target {
        users: vec![user.into()],
        sessions: vec![],
    }
}

async fn ack(session: &SessionHandle, ack: Ack) {
    session
        .handle(ClientFrame::new(Command::Ack(ack)).with_id(99))
        .await;
}

#[tokio::test(start_paused = true)]
async fn an_acked_publication_is_reported_delivered_and_an_unacked_one_failed_after_retries() {
    let hub = hub(acking(1000, 3));
    let r = room("conversation:1");
    let (alice, mut alice_q) = joined(&hub, "alice", &r).await;
    let (_bob, mut bob_q) = joined(&hub, "bob", &r).await;

    let delivery = hub
        .publish_with_report(&r, Publish::json("message.created", &"hi").expect("json"))
        .expect("publish");
    let offset = delivery.outcome().position.offset;
    let first = publications(&drain(&mut alice_q));
    assert_eq!(first.len(), 1);
    assert!(first[0].ack, "the publication asks for an ack");
    ack(&alice, Ack::offset(r.clone(), offset)).await;
    let now = delivery.snapshot();
    assert_eq!(now.delivered.len(), 1);
    assert_eq!(now.pending.len(), 1, "bob has not answered yet");

    let report = delivery.report().await;
    assert_eq!(
        report
            .delivered
            .iter()
            .map(|r| (r.user.as_deref(), r.attempts))
            .collect::<Vec<_>>(),
        [(Some("alice"), 1)]
    );
    assert_eq!(
        report
            .failed
            .iter()
            .map(|r| (r.user.as_deref(), r.attempts))
            .collect::<Vec<_>>(),
        [(Some("bob"), 3)]
    );
    assert!(report.pending.is_empty() && report.is_settled());
    assert_eq!((report.room.clone(), report.offset), (r.clone(), offset));
    // Bob got it three times (the same offset: a client deduplicates by offset); Alice once.
    let bob_got = publications(&drain(&mut bob_q));
    assert_eq!(bob_got.len(), 3);
    assert!(bob_got.iter().all(|p| p.offset == offset));
    assert!(publications(&drain(&mut alice_q)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_ack_after_a_retry_still_counts_and_duplicates_are_harmless() {
    let hub = hub(acking(1000, 3));
    let r = room("conversation:1");
    let (bob, mut bob_q) = joined(&hub, "bob", &r).await;
    let delivery = hub
        .publish_with_report(&r, Publish::json("m", &1).expect("json"))
        .expect("publish");
    let offset = delivery.outcome().position.offset;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        publications(&drain(&mut bob_q)).len(),
        2,
        "one retry so far"
    );
    ack(&bob, Ack::offset(r.clone(), offset)).await;
    ack(&bob, Ack::offset(r.clone(), offset)).await;
    let frames = drain(&mut bob_q);
    assert!(
        frames
            .iter()
            .all(|f| matches!(f, ServerFrame::Reply(reply) if reply.id == 99)),
        "both acks are answered, none is an error: {frames:?}"
    );
    let report = delivery.report().await;
    assert_eq!(report.delivered.len(), 1);
    assert_eq!(report.delivered[0].attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_closes_before_acking_is_reported_failed() {
    let hub = hub(acking(60_000, 3));
    let r = room("conversation:1");
    let (bob, _bob_q) = joined(&hub, "bob", &r).await;
    let delivery = hub
        .publish_with_report(&r, Publish::json("m", &1).expect("json"))
        .expect("publish");
    drop(bob);
    let report = delivery.report().await;
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_targeted_live_publication_is_acked_by_id() {
    let hub = hub(acking(1000, 2));
    let r = room("user:bob");
    let (bob, mut bob_q) = joined(&hub, "bob", &r).await;
    let delivery = hub
        .publish_with_report(
            &r,
            Publish::json("notice", &"for bob")
                .expect("json")
                .to(to_user("bob")),
        )
        .expect("publish");
    let got = publications(&drain(&mut bob_q));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, 0, "targeted publications are live-only");
    // The offset of a live-only publication names nothing; its id does.
    ack(&bob, Ack::live(r.clone(), "not-this-one")).await;
    assert_eq!(delivery.snapshot().pending.len(), 1);
    ack(&bob, Ack::live(r.clone(), got[0].id.clone())).await;
    let report = delivery.report().await;
    assert_eq!(report.delivered.len(), 1);
    assert_eq!(report.id, got[0].id);
}

#[tokio::test]
async fn an_ack_for_a_room_the_session_is_not_in_is_refused() {
    let hub = hub(HubConfig::default());
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    drain(&mut queue);
    ack(&session, Ack::offset(room("conversation:9"), 1)).await;
    let frames = drain(&mut queue);
    assert!(
        matches!(&frames[..], [ServerFrame::Error(e)] if e.error.code == ErrorCode::NotJoined),
        "{frames:?}"
    );
}

#[tokio::test]
async fn publications_for_an_offline_user_wait_and_arrive_in_order_on_join() {
    let hub = hub(HubConfig::default());
    let r = room("conversation:7");
    let (_alice, _alice_q) = joined(&hub, "alice", &r).await;
    for n in 1..=3 {
        let outcome = hub
            .publish(
                &r,
                Publish::json("message.created", &format!("m{n}"))
                    .expect("json")
                    .to(to_user("bob")),
            )
            .expect("publish");
        assert_eq!((outcome.delivered, outcome.offline), (0, 1));
    }
    assert_eq!(hub.stats().offline_users, 1);
    assert_eq!(hub.stats().offline_queued, 3);

    // Connecting alone delivers nothing yet; joining the room does, after `joined`.
    let (bob, mut bob_q) = hub.connect(Principal::user("bob"), "test", WireFormat::Json);
    assert!(publications(&drain(&mut bob_q)).is_empty());
    join(&bob, &r).await;
    let frames = drain(&mut bob_q);
    assert!(matches!(frames.first(), Some(ServerFrame::Joined(_))));
    let texts: Vec<String> = publications(&frames).iter().map(text).collect();
    assert_eq!(texts, ["m1", "m2", "m3"]);
    assert_eq!(hub.stats().offline_queued, 0, "delivered once, then gone");

    // Bob is here now: the next one is live, not queued.
    let outcome = hub
        .publish(
            &r,
            Publish::json("message.created", &"m4")
                .expect("json")
                .to(to_user("bob")),
        )
        .expect("publish");
    assert_eq!((outcome.delivered, outcome.offline), (1, 0));
}

#[tokio::test]
async fn offline_queues_are_bounded_expire_and_keep_rooms_apart() {
    let hub = hub(HubConfig::default().offline_queue(2, Duration::from_millis(300)));
    let a = room("conversation:a");
    let b = room("conversation:b");
    let send = |r: &RoomId, text: &str| {
        hub.publish(
            r,
            Publish::json("m", &text).expect("json").to(to_user("bob")),
        )
        .expect("publish")
    };
    send(&a, "old");
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&a, "a1");
    send(&b, "b1");
    send(&a, "a2"); // the queue holds 2: "old" (expired anyway) and then "a1" make room
    let (bob, mut bob_q) = hub.connect(Principal::user("bob"), "test", WireFormat::Json);
    join(&bob, &a).await;
    let texts: Vec<String> = publications(&drain(&mut bob_q)).iter().map(text).collect();
    assert_eq!(texts, ["a2"]);
    join(&bob, &b).await;
    let texts: Vec<String> = publications(&drain(&mut bob_q)).iter().map(text).collect();
    assert_eq!(texts, ["b1"]);
    hub.sweep();
    assert_eq!(hub.stats().offline_users, 0);
}

/// Only `bob@acme` may join `acme` rooms.
struct Tenants;

impl Authorizer for Tenants {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        match action {
            Action::Join(room) if room.name().starts_with("acme.") => {
                if principal.tenant.as_deref() == Some("acme") {
                    Ok(())
                } else {
                    Err(ErrorCode::RoomAccessDenied)
                }
            }
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn another_tenants_user_of_the_same_id_never_gets_the_queue() {
    let hub = Hub::builder(HubConfig::default())
        .authorizer(Tenants)
        .build()
        .expect("hub");
    let r = room("conversation:acme.1");
    hub.publish(
        &r,
        Publish::json("m", &"secret")
            .expect("json")
            .to(to_user("bob")),
    )
    .expect("publish");
    let mut other = Principal::user("bob");
    other.tenant = Some("globex".into());
    let (intruder, mut intruder_q) = hub.connect(other, "test", WireFormat::Json);
    join(&intruder, &r).await;
    let frames = drain(&mut intruder_q);
    assert!(publications(&frames).is_empty(), "{frames:?}");
    let mut owner = Principal::user("bob");
    owner.tenant = Some("acme".into());
    let (bob, mut bob_q) = hub.connect(owner, "test", WireFormat::Json);
    join(&bob, &r).await;
    let texts: Vec<String> = publications(&drain(&mut bob_q)).iter().map(text).collect();
    assert_eq!(texts, ["secret"]);
}

#[tokio::test]
async fn volatile_and_untargeted_publications_never_wait_offline() {
    let hub = hub(HubConfig::default());
    let r = room("conversation:1");
    let outcome = hub
        .publish(
            &r,
            Publish::new("typing.start", Payload::null())
                .volatile()
                .to(to_user("bob")),
        )
        .expect("publish");
    assert_eq!(outcome.offline, 0);
    hub.publish(&r, Publish::new("m", Payload::null()))
        .expect("publish");
    assert_eq!(hub.stats().offline_users, 0);
}
