//! The inbound pipeline's rate limiting step, in-process: which key each command is charged
//! to, that a refusal comes before authorization and keeps the session open, and that the
//! hub's sweep reaches the limiter.
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use streamgate_core::{
    Hub, HubConfig, Principal, RateKey, RateLimiter, RateSubject, SessionQueue, WireFormat,
};
use streamgate_protocol::{
    ClientFrame, Command, ErrorCode, Join, Payload, Ping, ServerFrame, Typing, UserCommand,
};

/// Records every key and refuses kinds listed in `refuse`.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    refuse: Arc<Mutex<Vec<&'static str>>>,
    sweeps: Arc<AtomicUsize>,
}

impl RateLimiter for Recorder {
    fn check(&self, key: &RateKey<'_>) -> Result<(), Duration> {
        let subject = match key.subject {
            RateSubject::User { user, .. } => format!("user:{user}"),
            RateSubject::Session(id) => format!("session:{id}"),
        };
        self.seen.lock().push((subject, key.kind.to_owned()));
        if self.refuse.lock().contains(&key.kind) {
            Err(Duration::from_micros(1500))
        } else {
            Ok(())
        }
    }

    fn sweep(&self) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }
}

fn frames(queue: &mut SessionQueue) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Some(item) = queue.try_recv() {
        frames.extend(item.frames().iter().map(|f| f.frame().clone()));
    }
    frames
}

fn command(name: &str) -> Command {
    Command::Command(UserCommand {
        name: name.into(),
        room: None,
        data: Payload::null(),
    })
}

#[tokio::test]
async fn commands_are_charged_by_kind_to_the_user_or_the_anonymous_session() {
    let recorder = Recorder::default();
    let hub = Hub::builder(HubConfig::default())
        .rate_limiter(recorder.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let room: streamgate_protocol::RoomId =
        "conversation:1".parse().unwrap_or_else(|e| panic!("{e}"));
    let (user, _q1) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    let (guest, _q2) = hub.connect(Principal::anonymous(), "test", WireFormat::Json);
    for cmd in [
        Command::Join(Join::new(room.clone())),
        Command::TypingStart(Typing { room: room.clone() }),
        Command::TypingStop(Typing { room: room.clone() }),
        command("message.send"),
    ] {
        user.handle(ClientFrame::new(cmd)).await;
    }
    guest
        .handle(ClientFrame::new(command("message.send")))
        .await;
    let seen = recorder.seen.lock().clone();
    let expected: Vec<(String, String)> = [
        ("user:u1", "join"),
        ("user:u1", "typing"),
        ("user:u1", "typing"),
        ("user:u1", "message.send"),
    ]
    .into_iter()
    .map(|(s, k)| (s.to_owned(), k.to_owned()))
    .chain([(format!("session:{}", guest.id()), "message.send".to_owned())])
    .collect();
    assert_eq!(seen, expected);

    hub.sweep();
    assert_eq!(recorder.sweeps.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_refusal_answers_rate_limited_before_authorization_and_keeps_the_session() {
    let recorder = Recorder::default();
    recorder.refuse.lock().push("message.send");
    let hub = Hub::builder(HubConfig::default())
        .rate_limiter(recorder)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The open policy would refuse an anonymous command with PERMISSION_DENIED: the rate limit
    // answers first.
    let (guest, mut queue) = hub.connect(Principal::anonymous(), "test", WireFormat::Json);
    frames(&mut queue);
    guest
        .handle(ClientFrame::new(command("message.send")).with_id(7))
        .await;
    guest
        .handle(ClientFrame::new(Command::Ping(Ping::default())).with_id(8))
        .await;
    let got = frames(&mut queue);
    match got.as_slice() {
        [ServerFrame::Error(e), ServerFrame::Pong(p)] => {
            assert_eq!(e.id, Some(7));
            assert_eq!(e.error.code, ErrorCode::RateLimited);
            // 1.5 ms rounds up to 2.
            assert_eq!(e.error.retry_after_ms, Some(2));
            assert_eq!(p.id, Some(8));
        }
        other => panic!("unexpected frames {other:?}"),
    }
    assert_eq!(
        hub.metrics().snapshot().errors_for(ErrorCode::RateLimited),
        1
    );
    assert!(queue.close_reason().is_none());
}
