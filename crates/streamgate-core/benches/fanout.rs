//! Fan-out throughput: one publication into a room of 10,000 in-process sessions.
//!
//! Reports the time of one `Hub::publish`; deliveries per second = members / time. Queues are
//! drained outside the timed section so every publish sees the same state. The sessions have
//! no writer tasks: this measures the hub's enqueue path (offset, history append, encode once,
//! one `Arc` clone and one non-blocking enqueue per member), not socket writes.

use std::hint::black_box;

use streamgate_core::{
    Hub, HubConfig, Principal, Publish, SessionHandle, SessionQueue, WireFormat,
};
use streamgate_protocol::{ClientFrame, Command, Join, Payload};

fn main() {
    divan::main();
}

struct Room {
    hub: Hub,
    room: streamgate_protocol::RoomId,
    sessions: Vec<(SessionHandle, SessionQueue)>,
}

fn room(members: usize, format_mix: bool) -> Room {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::builder(HubConfig::default().queue_capacity(64))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let room: streamgate_protocol::RoomId =
        "execution:bench".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut sessions = Vec::with_capacity(members);
    for i in 0..members {
        let format = if format_mix && i % 2 == 1 {
            WireFormat::Bincode
        } else {
            WireFormat::Json
        };
        let (handle, queue) = hub.connect(Principal::user(format!("u{i}")), "bench", format);
        runtime.block_on(handle.handle(ClientFrame::new(Command::Join(Join::new(room.clone())))));
        sessions.push((handle, queue));
    }
    drain(&mut sessions);
    Room {
        hub,
        room,
        sessions,
    }
}

fn drain(sessions: &mut [(SessionHandle, SessionQueue)]) {
    for (_, queue) in sessions {
        while queue.try_recv().is_some() {}
    }
}

fn run(bencher: divan::Bencher<'_, '_>, room: Room, members: usize) {
    let Room {
        hub,
        room,
        mut sessions,
    } = room;
    let data = payload();
    bencher
        .counter(divan::counter::ItemsCount::new(members))
        .with_inputs(|| {
            drain(&mut sessions);
            Publish::new("stream.token", data.clone())
        })
        .bench_local_values(|publish| black_box(hub.publish(&room, publish)));
}

/// 64-byte payload, as in the load generator's scenarios.
fn payload() -> Payload {
    Payload::json(&serde_json::json!({"text": "x".repeat(40), "seq": 123_456})).unwrap_or_default()
}

#[divan::bench(args = [1_000, 10_000], sample_count = 200, sample_size = 1)]
fn publish_json(bencher: divan::Bencher<'_, '_>, members: usize) {
    run(bencher, room(members, false), members);
}

#[divan::bench(args = [10_000], sample_count = 200, sample_size = 1)]
fn publish_json_and_bincode(bencher: divan::Bencher<'_, '_>, members: usize) {
    run(bencher, room(members, true), members);
}
