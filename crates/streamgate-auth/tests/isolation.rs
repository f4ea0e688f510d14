//! Tenant isolation against a real hub: random tenants, users, rooms and operations; no join
//! and no publication ever crosses a tenant boundary, and every allowed operation succeeds.

use proptest::prelude::*;
use streamgate_auth::{CROSS_TENANT_PERMISSION, TenantPolicy, room_tenant};
use streamgate_core::{
    Hub, HubConfig, Principal, PrincipalKind, Publish, SessionHandle, SessionQueue, WireFormat,
};
use streamgate_protocol::{
    ClientFrame, Command, ErrorCode, Join, Payload, RoomId, ServerFrame, Typing, UserCommand,
};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const KINDS: [&str; 3] = ["conversation", "execution", "lobby"];

#[derive(Debug, Clone)]
struct User {
    tenant: Option<usize>,
    kind: PrincipalKind,
    cross_tenant: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize, usize),
    Typing(usize, usize),
    Command(usize, usize),
    /// The application publishes into a room.
    Publish(usize),
}

fn user() -> impl Strategy<Value = User> {
    (
        prop::option::weighted(0.85, 0..TENANTS.len()),
        prop_oneof![
            Just(PrincipalKind::Member),
            Just(PrincipalKind::Supervisor),
            Just(PrincipalKind::Service),
            Just(PrincipalKind::Guest),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(tenant, kind, cross_tenant)| User {
            tenant,
            kind,
            cross_tenant,
        })
}

/// Rooms: every kind × (each tenant's rooms, plus names bound to no tenant).
fn rooms() -> Vec<RoomId> {
    let mut rooms = Vec::new();
    for kind in KINDS {
        for tenant in TENANTS {
            for n in 0..2 {
                rooms.push(RoomId::new(kind, &format!("{tenant}.{n}")));
            }
        }
        // A tenant prefix without a dot, and a name that looks like a longer tenant.
        rooms.push(RoomId::new(kind, "acme"));
        rooms.push(RoomId::new(kind, "acmecorp.1"));
    }
    rooms.into_iter().filter_map(Result::ok).collect()
}

fn op(users: usize, rooms: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..users, 0..rooms).prop_map(|(u, r)| Op::Join(u, r)),
        2 => (0..users, 0..rooms).prop_map(|(u, r)| Op::Typing(u, r)),
        1 => (0..users, 0..rooms).prop_map(|(u, r)| Op::Command(u, r)),
        3 => (0..rooms).prop_map(Op::Publish),
    ]
}

fn principal(i: usize, user: &User) -> Principal {
    let mut p = Principal::user(format!("u{i}")).with_kind(user.kind);
    if let Some(t) = user.tenant {
        p = p.with_tenant(TENANTS[t]);
    }
    if user.cross_tenant {
        p.permissions.push(CROSS_TENANT_PERMISSION.into());
    }
    p
}

/// The model: may this user reach this room?
fn reaches(user: &User, room: &RoomId) -> bool {
    room.kind() == "lobby"
        || room_tenant(room).is_some_and(|t| {
            (user.kind == PrincipalKind::Service && user.cross_tenant)
                || user.tenant.map(|u| TENANTS[u]) == Some(t)
        })
}

fn drain(queue: &mut SessionQueue) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Some(item) = queue.try_recv() {
        frames.extend(item.frames().iter().map(|f| f.frame().clone()));
    }
    frames
}

/// The answer to request `id` among `frames`.
fn answer(frames: &[ServerFrame], id: u64) -> Option<Result<(), ErrorCode>> {
    frames.iter().find_map(|f| match f {
        ServerFrame::Joined(j) if j.id == Some(id) => Some(Ok(())),
        ServerFrame::Reply(r) if r.id == id => Some(Ok(())),
        ServerFrame::Error(e) if e.id == Some(id) => Some(Err(e.error.code)),
        _ => None,
    })
}

async fn run(users: Vec<User>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rooms = rooms();
    let hub = Hub::builder(HubConfig::default())
        .authorizer(TenantPolicy::new().shared_kind("lobby"))
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut sessions: Vec<(SessionHandle, SessionQueue)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| hub.connect(principal(i, u), "proptest", WireFormat::Json))
        .collect();
    let mut joined = vec![vec![false; rooms.len()]; users.len()];
    for (n, op) in ops.into_iter().enumerate() {
        let id = n as u64 + 1;
        let (u, r, command) = match op {
            Op::Publish(r) => {
                hub.publish(&rooms[r], Publish::new("app.event", Payload::null()))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                continue;
            }
            Op::Join(u, r) => (u, r, Command::Join(Join::new(rooms[r].clone()))),
            Op::Typing(u, r) => (
                u,
                r,
                Command::TypingStart(Typing {
                    room: rooms[r].clone(),
                }),
            ),
            Op::Command(u, r) => (
                u,
                r,
                Command::Command(UserCommand {
                    name: "cancel".into(),
                    room: Some(rooms[r].clone()),
                    data: Payload::null(),
                }),
            ),
        };
        let (session, queue) = &mut sessions[u];
        let room = &rooms[r];
        let is_join = matches!(command, Command::Join(_));
        let is_typing = matches!(command, Command::TypingStart(_));
        session.handle(ClientFrame::new(command).with_id(id)).await;
        let frames = drain(queue);
        let got = answer(&frames, id);
        let user = &users[u];
        let guest = user.kind == PrincipalKind::Guest;
        let expected = if !reaches(user, room) {
            Err(ErrorCode::RoomAccessDenied)
        } else if is_join {
            Ok(())
        } else if guest {
            Err(ErrorCode::PermissionDenied)
        } else if is_typing && !joined[u][r] {
            Err(ErrorCode::NotJoined)
        } else if is_typing {
            Ok(())
        } else {
            Err(ErrorCode::UnknownCommand)
        };
        prop_assert_eq!(
            got,
            Some(expected),
            "{:?} by {:?} in {}",
            op_name(is_join, is_typing),
            user,
            room
        );
        if is_join && expected.is_ok() {
            joined[u][r] = true;
        }
        check(&users[u], &frames)?;
    }
    for (u, (_, queue)) in sessions.iter_mut().enumerate() {
        check(&users[u], &drain(queue))?;
    }
    Ok(())
}

fn op_name(join: bool, typing: bool) -> &'static str {
    match (join, typing) {
        (true, _) => "join",
        (_, true) => "typing",
        _ => "command",
    }
}

/// Nothing a session received may come from a room its user cannot reach.
fn check(user: &User, frames: &[ServerFrame]) -> Result<(), TestCaseError> {
    for frame in frames {
        let room = match frame {
            ServerFrame::Joined(j) => &j.room,
            ServerFrame::Publication(p) => &p.room,
            _ => continue,
        };
        prop_assert!(reaches(user, room), "{user:?} received {frame:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_join_and_no_publication_crosses_tenants(
        (users, ops) in prop::collection::vec(user(), 2..8).prop_flat_map(|users| {
            let n = users.len();
            (Just(users), prop::collection::vec(op(n, rooms().len()), 1..120))
        })
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(run(users, ops))?;
    }
}
