//! The scenarios, and what they share: subscriber tasks, publisher tasks, connecting many
//! clients, and the final checks.

pub(crate) mod chat;
pub(crate) mod fanout;
pub(crate) mod idle;
pub(crate) mod llm;
pub(crate) mod storm;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::client::{Client, Handler, System};
use crate::net::{ConnectError, Woke};
use crate::payload;
use crate::probe::{self, Sample};
use crate::report::{Connect, Generator, Server, rate};
use crate::stats::{Latency, Stats, Sub, SubHandler};
use crate::{Run, Scenario};

/// Runs the chosen scenario, filling `run.report`.
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    if let Some(pid) = run.server_pid() {
        let baseline = probe::sample(Some(pid))?;
        run.report.borrow_mut().server = Some(Server {
            pid,
            rss_baseline_bytes: Some(baseline.rss),
            ..Server::default()
        });
    }
    run.report.borrow_mut().generator = Some(Generator {
        processes: 1,
        ..Generator::default()
    });
    match run.args.scenario {
        Scenario::Fanout => fanout::run(run).await,
        Scenario::Chat => chat::run(run).await,
        Scenario::Llm => llm::run(run).await,
        Scenario::Idle => idle::run(run).await,
        Scenario::Storm => storm::run(run).await,
    }
}

/// A reading of the server (if its pid is known) and of this process.
pub(crate) fn samples(run: &Run) -> (Option<Sample>, Option<Sample>) {
    let server = run
        .server_pid()
        .and_then(|pid| probe::sample(Some(pid)).ok());
    (server, probe::sample(None).ok())
}

/// Pairs two optional samples.
/// Closes the measured window opened at `opened`, when `before` was sampled: logs it under
/// `label` and records deliveries, latency, and server and generator CPU in the report.
pub(crate) fn record_window(
    run: &Run,
    stats: &Stats,
    label: &str,
    opened: Instant,
    before: (Option<Sample>, Option<Sample>),
) {
    let (deliveries, histogram) = stats.close_window();
    let (s1, g1) = samples(run);
    let secs = opened.elapsed().as_secs_f64();
    let latency = Latency::of(&histogram);
    eprintln!(
        "{label}: {deliveries} deliveries in {secs:.2} s = {:.0}/s, p50 {} µs, p99 {} µs",
        rate(deliveries, secs),
        latency.as_ref().map_or(0, |l| l.p50),
        latency.as_ref().map_or(0, |l| l.p99),
    );
    run.report.borrow_mut().set_window(
        deliveries,
        secs,
        latency,
        pair(before.0, s1),
        pair(before.1, g1),
    );
}

pub(crate) fn pair(a: Option<Sample>, b: Option<Sample>) -> Option<(Sample, Sample)> {
    a.zip(b)
}

/// Records the server's RSS now as "after connect".
pub(crate) fn note_rss_after_connect(run: &Run) {
    if let Some(pid) = run.server_pid()
        && let Ok(s) = probe::sample(Some(pid))
    {
        run.report.borrow_mut().set_rss_after_connect(s.rss);
    }
}

/// The phase a chat member is in, sent to every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connected, not publishing yet.
    Wait,
    /// Publish from this instant on.
    Go(Instant),
    /// Stop publishing.
    Stop,
}

/// What a subscriber does once joined.
#[derive(Debug)]
pub(crate) enum Role {
    /// Only receive.
    Listen,
    /// Also publish into its room every `interval`, the first time `offset` after `Go`.
    Chat {
        /// Offset of the first publication.
        offset: Duration,
        /// Between publications.
        interval: Duration,
        /// The phase.
        phase: watch::Receiver<Phase>,
    },
}

/// How one connection attempt ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// Connected and joined.
    pub(crate) ok: bool,
    /// Time from `started` to the outcome.
    pub(crate) elapsed: Duration,
}

/// One subscriber to spawn.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Its state (room included).
    pub(crate) sub: Rc<Sub>,
    /// Its token.
    pub(crate) token: String,
    /// A seed for its WebSocket masks.
    pub(crate) seed: u32,
    /// What it does once joined.
    pub(crate) role: Role,
}

/// One listening [`Spec`] per subscriber, each with its token.
pub(crate) fn listeners(subs: &[Rc<Sub>], tokens: Vec<String>) -> Vec<Spec> {
    subs.iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (sub, token))| Spec {
            sub: Rc::clone(sub),
            token,
            seed: spread(i as u64) as u32,
            role: Role::Listen,
        })
        .collect()
}

/// Spawns a subscriber: it connects (holding a permit of `limit`, if any), reports the
/// outcome on `done`, then pumps until its connection ends.
pub(crate) fn spawn_subscriber(
    run: &Rc<Run>,
    stats: &Rc<Stats>,
    spec: Spec,
    limit: Option<Rc<Semaphore>>,
    started: Instant,
    done: mpsc::UnboundedSender<Outcome>,
) {
    let run = Rc::clone(run);
    let stats = Rc::clone(stats);
    tokio::task::spawn_local(async move {
        let Spec {
            sub,
            token,
            seed,
            role,
        } = spec;
        let room = run.room(sub.room);
        let permit = match &limit {
            Some(limit) => limit.acquire().await.ok(),
            None => None,
        };
        let attempt = Client::connect(run.system(), run.addr, &token, Some(&room), seed);
        let result = tokio::time::timeout(run.connect_timeout(), attempt).await;
        drop(permit);
        let elapsed = started.elapsed();
        let client = match result {
            Ok(Ok(client)) => Some(client),
            Ok(Err(ConnectError::Refused(code))) => {
                stats.refusal(code);
                None
            }
            Ok(Err(ConnectError::Failed(e))) => {
                stats.error(format!("connect: {e:#}"));
                None
            }
            Err(_) => {
                stats.error(format!(
                    "connect: no answer within {} s",
                    run.connect_timeout().as_secs_f64()
                ));
                None
            }
        };
        sub.alive.set(client.is_some());
        sub.joined.set(client.is_some());
        let _closed = done.send(Outcome {
            ok: client.is_some(),
            elapsed,
        });
        drop(token);
        let Some(mut client) = client else { return };
        let result = match role {
            Role::Listen => listen(&mut client, &stats, &sub).await,
            Role::Chat {
                offset,
                interval,
                phase,
            } => chat_member(&mut client, &stats, &sub, &room, offset, interval, phase).await,
        };
        sub.alive.set(false);
        if let Err(e) = result {
            stats.error(format!("subscriber: {e:#}"));
        }
    });
}

async fn listen(client: &mut Client, stats: &Stats, sub: &Sub) -> Result<()> {
    let mut handler = SubHandler { stats, sub };
    loop {
        client
            .pump(&mut handler, std::future::pending::<()>())
            .await?;
    }
}

async fn chat_member(
    client: &mut Client,
    stats: &Stats,
    sub: &Sub,
    room: &str,
    offset: Duration,
    interval: Duration,
    mut phase: watch::Receiver<Phase>,
) -> Result<()> {
    let mut handler = SubHandler { stats, sub };
    let mut next: Option<Instant> = None;
    let mut watching = true;
    loop {
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None if watching => {
                    if phase.changed().await.is_err() {
                        watching = false;
                    }
                }
                None => std::future::pending().await,
            }
        };
        client.pump(&mut handler, wake).await?;
        match *phase.borrow() {
            Phase::Wait => {}
            Phase::Go(start) => {
                if next.is_none() {
                    next = Some(start + offset);
                }
            }
            Phase::Stop => {
                next = None;
                watching = false;
            }
        }
        if let Some(at) = next
            && Instant::now() >= at
        {
            let Some(count) = stats.rooms.get(sub.room) else {
                bail!("room {} out of range", sub.room);
            };
            let seq = count.next_seq();
            client.queue_publish(room, &payload::payload(seq))?;
            next = Some(at + interval);
        }
    }
}

/// Waits for `n` outcomes: `(connected, outcomes)`.
pub(crate) async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Outcome>,
    n: usize,
) -> (u64, Vec<Outcome>) {
    let mut outcomes = Vec::with_capacity(n);
    let mut last_report = Instant::now();
    while outcomes.len() < n {
        let Some(outcome) = rx.recv().await else {
            break;
        };
        outcomes.push(outcome);
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!("  {} / {n} connection attempts done", outcomes.len());
        }
    }
    let connected = outcomes.iter().filter(|o| o.ok).count() as u64;
    (connected, outcomes)
}

/// Connection statistics of `outcomes`.
pub(crate) fn connect_stats(outcomes: &[Outcome], concurrency: Option<usize>) -> Option<Connect> {
    let mut h = crate::stats::histogram();
    let mut last = Duration::ZERO;
    for o in outcomes.iter().filter(|o| o.ok) {
        let us = u64::try_from(o.elapsed.as_micros()).unwrap_or(u64::MAX);
        h.saturating_record(us.max(1));
        last = last.max(o.elapsed);
    }
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| probe::round3(us as f64 / 1000.0);
    Some(Connect {
        per_sec: crate::report::rate(h.len(), last.as_secs_f64()),
        secs: probe::round3(last.as_secs_f64()),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        concurrency,
    })
}

/// Connects `subs` (with their specs) `concurrency` at a time; returns how many connected.
/// Fills `connections`, `connect` and the RSS after connecting in the report.
pub(crate) async fn connect_all(
    run: &Rc<Run>,
    stats: &Rc<Stats>,
    specs: Vec<Spec>,
    concurrency: Option<usize>,
) -> u64 {
    let n = specs.len();
    eprintln!("connecting {n} {} clients", run.system().name());
    run.report.borrow_mut().connections += n as u64;
    let limit = concurrency.map(|c| Rc::new(Semaphore::new(c.max(1))));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    for spec in specs {
        spawn_subscriber(run, stats, spec, limit.clone(), started, tx.clone());
    }
    drop(tx);
    let (connected, outcomes) = collect(&mut rx, n).await;
    eprintln!(
        "connected {connected} / {n} in {:.2} s ({} refused, {} errors)",
        started.elapsed().as_secs_f64(),
        stats.refused.get(),
        stats.errors.get()
    );
    {
        let mut report = run.report.borrow_mut();
        report.connected += connected;
        report.connect = connect_stats(&outcomes, concurrency);
    }
    note_rss_after_connect(run);
    connected
}

/// Tokens for users `u{from}`…, minted before anything is timed.
pub(crate) fn tokens(run: &Run, indexes: impl Iterator<Item = usize>) -> Result<Vec<String>> {
    indexes.map(|i| run.token(&format!("u{i}"))).collect()
}

/// A publication to send: room index and seq.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PubCmd {
    /// Room index.
    pub(crate) room: usize,
    /// Its seq in that room.
    pub(crate) seq: u64,
}

/// The handler of a publisher connection: answers to its publications.
struct PubHandler {
    stats: Rc<Stats>,
    ids: HashMap<u64, usize>,
}

impl Handler for PubHandler {
    fn delivery(&mut self, _seq: u64, _t: u64, _now: u64) {}

    fn answer(&mut self, id: u64, error: Option<String>) {
        let room = self.ids.remove(&id);
        if let Some(error) = error {
            if let Some(count) = room.and_then(|r| self.stats.rooms.get(r)) {
                count.failed.set(count.failed.get() + 1);
            }
            self.stats.error(format!("publish refused: {error}"));
        }
    }

    fn problem(&mut self, message: String) {
        self.stats
            .error(format!("publisher: server error: {message}"));
    }
}

/// Connects publisher `index` (the system's publisher transport, not a room member) and spawns
/// its task; send it [`PubCmd`]s, stamped with the time they are written.
pub(crate) async fn spawn_publisher(
    run: &Rc<Run>,
    stats: &Rc<Stats>,
    index: usize,
) -> Result<mpsc::UnboundedSender<PubCmd>> {
    let token = run.token(&format!("publisher{index}"))?;
    let system: System = run.system().publisher();
    let attempt = Client::connect(system, run.addr, &token, None, 0x9e37_79b9 ^ index as u32);
    let mut client = match tokio::time::timeout(run.connect_timeout(), attempt).await {
        Ok(Ok(client)) => client,
        Ok(Err(ConnectError::Refused(code))) => bail!("publisher {index}: refused: {code}"),
        Ok(Err(ConnectError::Failed(e))) => bail!("publisher {index}: {e:#}"),
        Err(_) => bail!("publisher {index}: no answer"),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<PubCmd>();
    let run = Rc::clone(run);
    let mut handler = PubHandler {
        stats: Rc::clone(stats),
        ids: HashMap::new(),
    };
    tokio::task::spawn_local(async move {
        let mut open = true;
        loop {
            let wake = async {
                if open {
                    rx.recv().await
                } else {
                    std::future::pending().await
                }
            };
            match client.pump(&mut handler, wake).await {
                Err(e) => {
                    handler.stats.error(format!("publisher {index}: {e:#}"));
                    return;
                }
                Ok(Woke::Wake(Some(cmd))) => {
                    let mut next = Some(cmd);
                    while let Some(cmd) = next {
                        let data = payload::payload(cmd.seq);
                        match client.queue_publish(&run.room(cmd.room), &data) {
                            Ok(Some(id)) => {
                                handler.ids.insert(id, cmd.room);
                            }
                            Ok(None) => {}
                            Err(e) => handler.stats.error(format!("publisher {index}: {e:#}")),
                        }
                        next = rx.try_recv().ok();
                    }
                }
                Ok(Woke::Wake(None)) => open = false,
                Ok(Woke::Data) => {}
            }
        }
    });
    Ok(tx)
}

/// Waits until every live subscriber received everything its room published, or `grace`.
pub(crate) async fn drain(stats: &Stats, subs: &[Rc<Sub>], grace: Duration) {
    let until = Instant::now() + grace;
    while Instant::now() < until && stats.missing(subs) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies the counters and the delivery checks into the report.
pub(crate) fn finish(run: &Run, stats: &Stats, subs: &[Rc<Sub>], check_delivery: bool) {
    let missing = stats.missing(subs);
    let published: u64 = stats.rooms.iter().map(|r| r.published.get()).sum();
    let mut report = run.report.borrow_mut();
    report.errors += stats.errors.get();
    report
        .error_samples
        .extend(stats.error_samples.borrow().iter().cloned());
    report.refused += stats.refused.get();
    for (code, n) in stats.refusal_codes.borrow().iter() {
        *report.refusal_codes.entry(code.clone()).or_default() += n;
    }
    report.duplicates += stats.duplicates.get();
    report.missing += missing;
    report.publications = Some(published);
    if report.connected == 0 && report.connections > 0 {
        report.problem("no client connected");
    } else if report.connected + report.refused < report.connections {
        let failed = report.connections - report.connected - report.refused;
        report.problem(format!("{failed} clients failed to connect"));
    }
    if report.errors > 0 {
        let errors = report.errors;
        report.problem(format!("{errors} errors"));
    }
    if check_delivery && run.system().is_streamgate() {
        if report.missing > 0 {
            let missing = report.missing;
            report.problem(format!("{missing} deliveries missing"));
        }
        if report.duplicates > 0 {
            let duplicates = report.duplicates;
            report.problem(format!("{duplicates} duplicate deliveries"));
        }
    }
}

/// A well-spread 32-bit value from `i` (splitmix64), for seeds and offsets.
pub(crate) fn spread(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Inserts a parameter into the report.
pub(crate) fn param(run: &Run, name: &str, value: impl Into<serde_json::Value>) {
    run.report
        .borrow_mut()
        .params
        .insert(name.to_owned(), value.into());
}
