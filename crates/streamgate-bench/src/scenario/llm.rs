//! `llm`: `--rooms` token streams, each watched by `--members` viewers; `--publishers`
//! connections (each owning a share of the streams) send `--rate` tokens per stream per second,
//! evenly spaced. The headline is the latency.

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::time::{Instant, sleep_until};

use super::{
    PubCmd, connect_all, finish, listeners, param, record_window, samples, spawn_publisher, tokens,
};
use crate::Run;
use crate::stats::{Stats, Sub};

/// Runs the scenario.
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    let rooms = run.args.rooms.unwrap_or(200).max(1);
    let members = run.args.members.unwrap_or(5).max(1);
    let publishers = run.args.publishers.clamp(1, rooms);
    let per_stream = run.args.rate;
    if per_stream <= 0.0 {
        bail!("--rate must be positive");
    }
    let n = rooms * members;
    param(run, "rooms", rooms);
    param(run, "members", members);
    param(run, "publishers", publishers);
    param(run, "rate", per_stream);
    param(run, "warmup_secs", run.args.warmup_secs);
    let stats = Rc::new(Stats::new(rooms, false));
    let tokens = tokens(run, 0..n)?;
    let mut senders = Vec::with_capacity(publishers);
    for p in 0..publishers {
        senders.push(spawn_publisher(run, &stats, p).await?);
    }
    let subs: Vec<Rc<Sub>> = (0..n)
        .map(|i| {
            Rc::new(Sub {
                room: i / members,
                ..Sub::default()
            })
        })
        .collect();
    let specs = listeners(&subs, tokens);
    let connected = connect_all(run, &stats, specs, Some(run.args.concurrency)).await;
    if connected == 0 {
        finish(run, &stats, &subs, true);
        bail!("no viewer connected");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Publication k goes to stream k % rooms at start + k / total: every stream gets `rate`
    // per second, evenly spaced, and the streams interleave.
    let total = rooms as f64 * per_stream;
    eprintln!("llm: {rooms} streams × {per_stream}/s = {total}/s over {publishers} publishers");
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(run.args.warmup_secs.max(0.0));
    let end = warm_end + Duration::from_secs_f64(run.args.duration_secs.max(0.1));
    let mut window = None;
    let mut k = 0u64;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_end {
            stats.open_window();
            window = Some((now, samples(run)));
        }
        if now >= end {
            break;
        }
        loop {
            let due = start + Duration::from_secs_f64(k as f64 / total);
            if due > now {
                break;
            }
            let room = (k % rooms as u64) as usize;
            let seq = stats.rooms[room].next_seq();
            senders[room % publishers]
                .send(PubCmd { room, seq })
                .ok()
                .context("a publisher is gone")?;
            k += 1;
        }
        let mut wake = end.min(start + Duration::from_secs_f64(k as f64 / total));
        if window.is_none() {
            wake = wake.min(warm_end);
        }
        sleep_until(wake).await;
    }
    let Some((opened, before)) = window else {
        bail!("the measured window never opened");
    };
    record_window(run, &stats, "llm", opened, before);
    super::drain(&stats, &subs, run.grace()).await;
    finish(run, &stats, &subs, true);
    Ok(())
}
