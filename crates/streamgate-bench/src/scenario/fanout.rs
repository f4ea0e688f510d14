//! `fanout`: N subscribers in one room. Phase 1 is a closed loop (`--in-flight` publications
//! outstanding, the next sent when one reached every subscriber): the most deliveries per second
//! the pair sustains. Phase 2 offers a fixed rate (`--fixed-rate` deliveries/s, publications
//! evenly spaced): latency below saturation.

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::{
    PubCmd, connect_all, finish, listeners, pair, param, record_window, samples, spawn_publisher,
    tokens,
};
use crate::Run;
use crate::report::{FixedRate, per_delivery, rate};
use crate::stats::{Completion, Latency, Stats, Sub};

/// A publication not received by everyone within this long is given up on (it is missing).
const STALL: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    let n = run.args.connections.unwrap_or(10_000);
    param(run, "connections", n);
    param(run, "in_flight", run.args.in_flight);
    param(run, "warmup_secs", run.args.warmup_secs);
    param(run, "fixed_rate", run.args.fixed_rate);
    param(run, "room", run.room(0));
    let stats = Rc::new(Stats::new(1, true));
    let tokens = tokens(run, 0..n)?;
    let publisher = spawn_publisher(run, &stats, 0).await?;
    let subs: Vec<Rc<Sub>> = (0..n).map(|_| Rc::new(Sub::default())).collect();
    let specs = listeners(&subs, tokens);
    let connected = connect_all(run, &stats, specs, Some(run.args.concurrency)).await;
    if connected == 0 {
        finish(run, &stats, &subs, true);
        bail!("no subscriber connected");
    }
    let members = u32::try_from(connected).context("too many subscribers")?;
    // Let the last joins settle (a peer may confirm the connect before the room join).
    tokio::time::sleep(Duration::from_millis(200)).await;

    closed_loop(run, &stats, &publisher, members).await?;
    if run.args.fixed_rate > 0.0 {
        settle(&stats).await;
        fixed_rate(run, &stats, &publisher, members).await?;
    }
    super::drain(&stats, &subs, run.grace()).await;
    finish(run, &stats, &subs, true);
    Ok(())
}

fn completion(stats: &Stats) -> Result<&Completion> {
    stats.completion.as_ref().context("closed-loop tracking")
}

async fn closed_loop(
    run: &Run,
    stats: &Stats,
    publisher: &mpsc::UnboundedSender<PubCmd>,
    members: u32,
) -> Result<()> {
    let comp = completion(stats)?;
    let room = &stats.rooms[0];
    let in_flight = run.args.in_flight.clamp(1, Completion::CAPACITY / 2) as u64;
    let duration = Duration::from_secs_f64(run.args.duration_secs.max(0.1));
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(run.args.warmup_secs.max(0.0));
    let end = warm_end + duration;
    eprintln!(
        "closed loop: {in_flight} in flight, {:.1} s warm-up, {:.1} s measured",
        run.args.warmup_secs,
        duration.as_secs_f64()
    );
    let mut window = None;
    let mut last_completed = comp.completed.get();
    let mut last_progress = start;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_end {
            stats.open_window();
            window = Some((now, samples(run)));
        }
        if now >= end {
            break;
        }
        let done = comp.completed.get();
        if done != last_completed {
            last_completed = done;
            last_progress = now;
        } else if now.duration_since(last_progress) >= STALL {
            if let Some(seq) = comp.give_up_oldest() {
                stats.error(format!(
                    "publication {seq} did not reach every subscriber within {} s",
                    STALL.as_secs()
                ));
            }
            last_progress = now;
        }
        let outstanding = room.published.get() - comp.completed.get();
        for _ in outstanding..in_flight {
            let seq = room.next_seq();
            comp.expect(seq, members);
            publisher
                .send(PubCmd { room: 0, seq })
                .ok()
                .context("the publisher is gone")?;
        }
        let mut wake = end.min(last_progress + STALL);
        if window.is_none() {
            wake = wake.min(warm_end);
        }
        tokio::select! {
            () = comp.notify.notified() => {}
            () = sleep_until(wake) => {}
        }
    }
    let Some((opened, before)) = window else {
        bail!("the measured window never opened");
    };
    record_window(run, stats, "closed loop", opened, before);
    Ok(())
}

/// Waits until the closed loop's publications are complete (or given up on).
async fn settle(stats: &Stats) {
    let Some(comp) = stats.completion.as_ref() else {
        return;
    };
    let until = Instant::now() + STALL;
    while comp.completed.get() < stats.rooms[0].published.get() {
        if Instant::now() >= until {
            while comp.give_up_oldest().is_some() {}
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn fixed_rate(
    run: &Run,
    stats: &Stats,
    publisher: &mpsc::UnboundedSender<PubCmd>,
    members: u32,
) -> Result<()> {
    let comp = completion(stats)?;
    let room = &stats.rooms[0];
    let offered = run.args.fixed_rate;
    let pubs_per_sec = offered / f64::from(members);
    let duration = Duration::from_secs_f64(run.args.duration_secs.max(0.1));
    eprintln!("fixed rate: {offered} deliveries/s = {pubs_per_sec:.2} publications/s");
    stats.open_window();
    let start = Instant::now();
    let (s0, g0) = samples(run);
    let end = start + duration;
    let mut sent = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(sent as f64 / pubs_per_sec);
        if due >= end {
            break;
        }
        sleep_until(due).await;
        let seq = room.next_seq();
        comp.expect(seq, members);
        publisher
            .send(PubCmd { room: 0, seq })
            .ok()
            .context("the publisher is gone")?;
        sent += 1;
    }
    sleep_until(end).await;
    let (deliveries, histogram) = stats.close_window();
    let (s1, g1) = samples(run);
    let secs = start.elapsed().as_secs_f64();
    let latency = Latency::of(&histogram);
    eprintln!(
        "fixed rate: {deliveries} deliveries in {secs:.2} s = {:.0}/s, p50 {} µs, p99 {} µs",
        rate(deliveries, secs),
        latency.as_ref().map_or(0, |l| l.p50),
        latency.as_ref().map_or(0, |l| l.p99),
    );
    let server = pair(s0, s1);
    run.report.borrow_mut().fixed_rate = Some(FixedRate {
        offered_per_sec: offered,
        publications_per_sec: crate::probe::round3(pubs_per_sec),
        publications: sent,
        deliveries,
        deliveries_per_sec: rate(deliveries, secs),
        latency_us: latency,
        server_cpu_percent: server.map(|(a, b)| a.cpu_percent(&b)),
        server_cpu_us_per_delivery: server
            .and_then(|(a, b)| per_delivery(a.cpu_us_until(&b), deliveries)),
        generator_cpu_percent: pair(g0, g1).map(|(a, b)| a.cpu_percent(&b)),
    });
    Ok(())
}
