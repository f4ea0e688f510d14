//! Application commands in-process: typed handlers, validation, error mapping, unknown names,
//! and the built-in Stop.
use serde::{Deserialize, Serialize};
use streamgate_core::{
    Action, Authorizer, CommandError, Hub, HubConfig, Principal, SessionHandle, SessionQueue,
    WireFormat, typed,
};
use streamgate_protocol::{
    ClientFrame, Command, ErrorBody, ErrorCode, Join, Payload, RoomId, ServerFrame, StreamUpdate,
    UserCommand,
};
use validator::Validate;

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

#[derive(Deserialize, Validate)]
struct Add {
    #[validate(range(max = 1000))]
    a: u32,
    #[validate(range(max = 1000))]
    b: u32,
}

#[derive(Serialize)]
struct Sum {
    sum: u32,
    user: Option<String>,
    room: Option<String>,
}

#[derive(Deserialize, Validate)]
struct Fail {
    how: String,
}

/// Refuses `stream.cancel` to principals with the role `viewer`.
struct NoViewerStop;

impl Authorizer for NoViewerStop {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        match action {
            Action::Command {
                name: "stream.cancel",
                ..
            } if principal.roles.iter().any(|r| r == "viewer") => Err(ErrorCode::PermissionDenied),
            _ => Ok(()),
        }
    }
}

fn hub() -> Hub {
    Hub::builder(HubConfig::default())
        .authorizer(NoViewerStop)
        .command(
            "math.add",
            typed(|ctx, add: Add| async move {
                Ok(Sum {
                    sum: add.a + add.b,
                    user: ctx.principal().user.clone(),
                    room: ctx.room().map(ToString::to_string),
                })
            }),
        )
        .command(
            "fail",
            typed(|_ctx, fail: Fail| async move {
                Err::<(), _>(match fail.how.as_str() {
                    "denied" => CommandError::PermissionDenied,
                    "missing" => CommandError::NotFound("no such message".into()),
                    "joined" => CommandError::NotJoined,
                    _ => CommandError::Internal("db password=hunter2 unreachable".into()),
                })
            }),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn drain(queue: &mut SessionQueue) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Some(item) = queue.try_recv() {
        frames.extend(item.frames().iter().map(|f| f.frame().clone()));
    }
    frames
}

async fn command(
    session: &SessionHandle,
    queue: &mut SessionQueue,
    id: u64,
    name: &str,
    room: Option<RoomId>,
    data: serde_json::Value,
) -> Result<serde_json::Value, ErrorBody> {
    let cmd = UserCommand {
        name: name.into(),
        room,
        data: Payload::json(&data).unwrap_or_else(|e| panic!("{e}")),
    };
    session
        .handle(ClientFrame::new(Command::Command(cmd)).with_id(id))
        .await;
    let frames = drain(queue);
    assert_eq!(frames.len(), 1, "one answer expected: {frames:?}");
    match &frames[0] {
        ServerFrame::Reply(reply) if reply.id == id => {
            Ok(reply.data.decode().unwrap_or_else(|e| panic!("{e}")))
        }
        ServerFrame::Error(error) if error.id == Some(id) => Err(error.error.clone()),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn a_typed_handler_replies_with_its_data() {
    let hub = hub();
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    drain(&mut queue);
    let reply = command(
        &session,
        &mut queue,
        7,
        "math.add",
        Some(room("conversation:1")),
        serde_json::json!({"a": 2, "b": 3}),
    )
    .await;
    assert_eq!(
        reply.ok(),
        Some(serde_json::json!({"sum": 5, "user": "u1", "room": "conversation:1"}))
    );
}

#[tokio::test]
async fn bad_data_is_a_validation_failure_that_names_only_fields() {
    let hub = hub();
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    drain(&mut queue);
    let wrong_shape = command(
        &session,
        &mut queue,
        1,
        "math.add",
        None,
        serde_json::json!({"a": "two"}),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(wrong_shape.code, ErrorCode::ValidationFailed);
    assert!(
        !wrong_shape.message.contains("u32"),
        "{}",
        wrong_shape.message
    );

    let out_of_range = command(
        &session,
        &mut queue,
        2,
        "math.add",
        None,
        serde_json::json!({"a": 2000, "b": 1}),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(out_of_range.code, ErrorCode::ValidationFailed);
    assert_eq!(out_of_range.message, "invalid command data: a");
}

#[tokio::test]
async fn handler_errors_map_to_codes_without_internals() {
    let hub = hub();
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    drain(&mut queue);
    for (id, how, code) in [
        (1, "denied", ErrorCode::PermissionDenied),
        (2, "missing", ErrorCode::ValidationFailed),
        (3, "joined", ErrorCode::NotJoined),
        (4, "boom", ErrorCode::Internal),
    ] {
        let error = command(
            &session,
            &mut queue,
            id,
            "fail",
            None,
            serde_json::json!({ "how": how }),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{how} accepted"));
        assert_eq!(error.code, code, "{how}");
        assert!(!error.message.contains("hunter2"), "{}", error.message);
    }
}

#[tokio::test]
async fn unknown_commands_and_refused_senders_keep_their_codes() {
    let hub = hub();
    let (session, mut queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    drain(&mut queue);
    let unknown = command(
        &session,
        &mut queue,
        1,
        "nope",
        None,
        serde_json::Value::Null,
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(unknown.code, ErrorCode::UnknownCommand);

    let (guest, mut guest_queue) = Hub::builder(HubConfig::default())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .connect(Principal::anonymous(), "test", WireFormat::Json);
    drain(&mut guest_queue);
    let refused = command(
        &guest,
        &mut guest_queue,
        1,
        "stream.cancel",
        Some(room("execution:1")),
        serde_json::Value::Null,
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn stop_cancels_the_stream_for_members_only() {
    let hub = hub();
    let r = room("execution:run-1");
    let (member, mut member_queue) = hub.connect(Principal::user("u1"), "test", WireFormat::Json);
    member
        .handle(ClientFrame::new(Command::Join(Join::new(r.clone()))))
        .await;
    let (outsider, mut outsider_queue) =
        hub.connect(Principal::user("u2"), "test", WireFormat::Json);
    drain(&mut member_queue);
    drain(&mut outsider_queue);

    let none = command(
        &member,
        &mut member_queue,
        1,
        "stream.cancel",
        None,
        serde_json::json!({ "room": r }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(none.code, ErrorCode::ValidationFailed, "no stream runs yet");

    let stream = hub.stream(r.clone());
    let not_joined = command(
        &outsider,
        &mut outsider_queue,
        1,
        "stream.cancel",
        Some(r.clone()),
        serde_json::Value::Null,
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(not_joined.code, ErrorCode::NotJoined);
    assert!(!stream.is_cancelled());

    let ok = command(
        &member,
        &mut member_queue,
        2,
        "stream.cancel",
        None,
        serde_json::json!({ "room": r }),
    )
    .await;
    assert_eq!(ok.ok(), Some(serde_json::Value::Null));
    stream.cancelled().await;
    drop(stream);
    let frames = drain(&mut member_queue);
    let updates: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Publication(p) => StreamUpdate::from_publication(p),
            _ => None,
        })
        .collect();
    assert!(
        matches!(updates.as_slice(), [Ok(StreamUpdate::Cancelled(_))]),
        "a cancelled handle dropped unended ends as cancelled: {updates:?}"
    );
}
