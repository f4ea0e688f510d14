//! `chat`: `--rooms` rooms of `--members` members; every member publishes into its room over
//! its own connection every `--interval-ms` (first at a random offset, so sends are spread), and
//! every member receives every publication of its room, its own included.

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Phase, Role, Spec, connect_all, finish, param, record_window, samples, spread, tokens,
};
use crate::Run;
use crate::stats::{Stats, Sub};

/// Runs the scenario.
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    let rooms = run.args.rooms.unwrap_or(1000).max(1);
    let members = run.args.members.unwrap_or(10).max(1);
    let n = rooms * members;
    param(run, "rooms", rooms);
    param(run, "members", members);
    param(run, "interval_ms", run.args.interval_ms);
    param(run, "warmup_secs", run.args.warmup_secs);
    if !run.system().can_publish() {
        run.report.borrow_mut().skipped =
            Some("an SSE client cannot publish over its own connection".to_owned());
        return Ok(());
    }
    let stats = Rc::new(Stats::new(rooms, false));
    let tokens = tokens(run, 0..n)?;
    let interval = Duration::from_millis(run.args.interval_ms.max(1));
    let (phase_tx, phase_rx) = watch::channel(Phase::Wait);
    let subs: Vec<Rc<Sub>> = (0..n)
        .map(|i| {
            Rc::new(Sub {
                room: i / members,
                ..Sub::default()
            })
        })
        .collect();
    let specs = subs
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (sub, token))| {
            let spread = spread(i as u64);
            Spec {
                sub: Rc::clone(sub),
                token,
                seed: spread as u32,
                role: Role::Chat {
                    offset: interval.mul_f64((spread % 10_000) as f64 / 10_000.0),
                    interval,
                    phase: phase_rx.clone(),
                },
            }
        })
        .collect();
    drop(phase_rx);
    let connected = connect_all(run, &stats, specs, Some(run.args.concurrency)).await;
    if connected == 0 {
        finish(run, &stats, &subs, true);
        bail!("no client connected");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!(
        "chat: {connected} members publishing every {} ms",
        interval.as_millis()
    );
    let _no_members = phase_tx.send(Phase::Go(Instant::now()));
    tokio::time::sleep(Duration::from_secs_f64(run.args.warmup_secs.max(0.0))).await;
    stats.open_window();
    let opened = Instant::now();
    let before = samples(run);
    tokio::time::sleep(Duration::from_secs_f64(run.args.duration_secs.max(0.1))).await;
    record_window(run, &stats, "chat", opened, before);
    let _no_members = phase_tx.send(Phase::Stop);
    super::drain(&stats, &subs, run.grace()).await;
    finish(run, &stats, &subs, true);
    Ok(())
}
