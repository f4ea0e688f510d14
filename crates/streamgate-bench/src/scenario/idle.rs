//! `idle`: `--connections` clients, each in one of `--rooms` rooms, held idle. The server's RSS
//! per connection is read after a 2 s settle; after `--hold-secs` one publication goes into
//! every room and every held connection must receive it.
//!
//! With `--processes K` the connections are split over K worker processes (a process may hold
//! at most its open-files limit), each this binary re-run with `--worker I/K`. The line
//! protocol is one JSON object per line on the worker's stdout and plain words on its stdin:
//!
//! ```text
//! worker → parent   {"kind":"held","counts":{…},"missing":0,"lost":0}   connections held
//! parent → worker   check                                               everything is published
//! worker → parent   {"kind":"done","counts":{…},"missing":M,"lost":L}   after the grace period
//! ```

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    PubCmd, Role, Spec, connect_all, finish, note_rss_after_connect, param, spawn_publisher,
    spread, tokens,
};
use crate::report::{Counts, Liveness, Report};
use crate::stats::{Stats, Sub};
use crate::{Args, Run};

/// Before the RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

/// One line of a worker.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerLine {
    kind: String,
    counts: Counts,
    missing: u64,
    lost: u64,
}

fn sizes(args: &Args) -> (usize, usize) {
    let n = args.connections.unwrap_or(19_000);
    let rooms = args.rooms.unwrap_or(n / 100).max(1);
    (n, rooms)
}

/// Runs the scenario (the parent, with or without workers).
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    let (n, rooms) = sizes(&run.args);
    let processes = run.args.processes.max(1);
    param(run, "connections", n);
    param(run, "rooms", rooms);
    param(run, "hold_secs", run.args.hold_secs);
    param(run, "processes", processes);
    let stats = Rc::new(Stats::new(rooms, false));
    // The publisher first: the server may be full once the clients are in.
    let publisher = spawn_publisher(run, &stats, 0).await?;
    if processes == 1 {
        in_process(run, &stats, &publisher, n, rooms).await
    } else {
        with_workers(run, &stats, &publisher, n, processes).await
    }
}

fn specs(run: &Run, indexes: &[usize], rooms: usize) -> Result<(Vec<Rc<Sub>>, Vec<Spec>)> {
    let tokens = tokens(run, indexes.iter().copied())?;
    let subs: Vec<Rc<Sub>> = indexes
        .iter()
        .map(|i| {
            Rc::new(Sub {
                room: i % rooms,
                ..Sub::default()
            })
        })
        .collect();
    let specs = subs
        .iter()
        .zip(tokens)
        .zip(indexes)
        .map(|((sub, token), &i)| Spec {
            sub: Rc::clone(sub),
            token,
            seed: spread(i as u64) as u32,
            role: Role::Listen,
        })
        .collect();
    Ok((subs, specs))
}

/// Publishes one message into every room.
fn publish_everywhere(stats: &Stats, publisher: &mpsc::UnboundedSender<PubCmd>) -> Result<u64> {
    for (room, count) in stats.rooms.iter().enumerate() {
        let seq = count.next_seq();
        publisher
            .send(PubCmd { room, seq })
            .ok()
            .context("the publisher is gone")?;
    }
    Ok(stats.rooms.len() as u64)
}

/// Holds for `--hold-secs` after the settle; returns the seconds held.
async fn hold(run: &Run, connected_at: Instant) -> f64 {
    tokio::time::sleep(SETTLE).await;
    note_rss_after_connect(run);
    eprintln!(
        "idle: RSS per connection {:?} bytes; holding {} s",
        run.report
            .borrow()
            .server
            .as_ref()
            .and_then(|s| s.rss_per_connection_bytes),
        run.args.hold_secs
    );
    tokio::time::sleep(Duration::from_secs_f64(run.args.hold_secs.max(0.0))).await;
    connected_at.elapsed().as_secs_f64()
}

async fn in_process(
    run: &Rc<Run>,
    stats: &Rc<Stats>,
    publisher: &mpsc::UnboundedSender<PubCmd>,
    n: usize,
    rooms: usize,
) -> Result<()> {
    let indexes: Vec<usize> = (0..n).collect();
    let (subs, specs) = specs(run, &indexes, rooms)?;
    let connected = connect_all(run, stats, specs, Some(run.args.concurrency)).await;
    let connected_at = Instant::now();
    if connected == 0 {
        finish(run, stats, &subs, true);
        bail!("no client connected");
    }
    let held_secs = hold(run, connected_at).await;
    let lost_before = subs
        .iter()
        .filter(|s| s.joined.get() && !s.alive.get())
        .count();
    let publications = publish_everywhere(stats, publisher)?;
    super::drain(stats, &subs, run.grace()).await;
    let delivered = stats.deliveries.get();
    run.report.borrow_mut().liveness = Some(Liveness {
        publications,
        expected: connected,
        delivered,
        lost: lost_before as u64,
        held_secs: crate::probe::round3(held_secs),
    });
    finish(run, stats, &subs, true);
    check_liveness(&mut run.report.borrow_mut());
    Ok(())
}

fn check_liveness(report: &mut Report) {
    let Some(l) = &report.liveness else { return };
    if l.delivered < l.expected {
        let problem = format!(
            "liveness: {} of {} held connections received the check publication",
            l.delivered, l.expected
        );
        report.problem(problem);
    }
}

/// A worker process and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    async fn line(&mut self, kind: &str) -> Result<WorkerLine> {
        let line = self
            .lines
            .next_line()
            .await?
            .with_context(|| format!("a worker exited before `{kind}`"))?;
        let parsed: WorkerLine = serde_json::from_str(&line)
            .with_context(|| format!("a malformed worker line {line:?}"))?;
        if parsed.kind != kind {
            bail!("expected a `{kind}` line from a worker, got {line:?}");
        }
        Ok(parsed)
    }
}

async fn with_workers(
    run: &Rc<Run>,
    stats: &Rc<Stats>,
    publisher: &mpsc::UnboundedSender<PubCmd>,
    n: usize,
    processes: usize,
) -> Result<()> {
    let exe = std::env::current_exe().context("locate this binary")?;
    let own_args: Vec<String> = std::env::args().skip(1).collect();
    let mut workers = Vec::with_capacity(processes);
    for i in 0..processes {
        let mut child = Command::new(&exe)
            .args(&own_args)
            .arg("--worker")
            .arg(format!("{i}/{processes}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start a worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        workers.push(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
    }
    let started = Instant::now();
    let mut held = Counts::default();
    for w in &mut workers {
        held.merge(&w.line("held").await?.counts);
    }
    let connected_at = Instant::now();
    eprintln!(
        "idle: workers hold {} connections ({} refused) after {:.2} s",
        held.connected,
        held.refused,
        started.elapsed().as_secs_f64()
    );
    {
        let mut report = run.report.borrow_mut();
        report.connections = n as u64;
        report.connected = held.connected;
        if let Some(g) = report.generator.as_mut() {
            g.processes = processes;
        }
    }
    if held.connected == 0 {
        run.report.borrow_mut().set_counts(&held);
        bail!("no client connected");
    }
    let held_secs = hold(run, connected_at).await;
    let publications = publish_everywhere(stats, publisher)?;
    // Let the publisher write and the server answer before the workers start their grace.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for w in &mut workers {
        w.stdin.write_all(b"check\n").await?;
        w.stdin.flush().await?;
    }
    let mut done = Counts::default();
    let (mut missing, mut lost) = (0, 0);
    for w in &mut workers {
        let line = w.line("done").await?;
        done.merge(&line.counts);
        missing += line.missing;
        lost += line.lost;
    }
    for w in &mut workers {
        let _exited = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
    }
    {
        let mut report = run.report.borrow_mut();
        report.set_counts(&done);
        report.connected = held.connected;
        report.missing = missing;
        report.liveness = Some(Liveness {
            publications,
            expected: held.connected,
            delivered: done.deliveries,
            lost,
            held_secs: crate::probe::round3(held_secs),
        });
    }
    // The parent's own counters: the publisher's errors.
    finish(run, stats, &[], false);
    let mut report = run.report.borrow_mut();
    if report.missing > 0 && run.system().is_streamgate() {
        let missing = report.missing;
        report.problem(format!("{missing} deliveries missing"));
    }
    check_liveness(&mut report);
    Ok(())
}

/// The worker side: hold this worker's share, report, wait for `check`, report again.
pub(crate) async fn worker(args: Args) -> Result<()> {
    let spec = args.worker.clone().unwrap_or_default();
    let (i, k) = spec
        .split_once('/')
        .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
        .filter(|(i, k)| i < k)
        .with_context(|| format!("--worker {spec:?}: expected I/K"))?;
    let addr = crate::loopback_addr(&args.url)?;
    let (n, rooms) = sizes(&args);
    let run = Rc::new(Run::new(args, addr, Report::default()));
    let stats = Rc::new(Stats::new(rooms, false));
    let indexes: Vec<usize> = (0..n).filter(|j| j % k == i).collect();
    let (subs, specs) = specs(&run, &indexes, rooms)?;
    let connected = connect_all(&run, &stats, specs, Some(run.args.concurrency)).await;
    let mut stdout = tokio::io::stdout();
    let line = |kind: &str, missing: u64, lost: u64| -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(&WorkerLine {
            kind: kind.to_owned(),
            counts: Counts::of(&stats, connected),
            missing,
            lost,
        })?;
        line.push(b'\n');
        Ok(line)
    };
    stdout.write_all(&line("held", 0, 0)?).await?;
    stdout.flush().await?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match stdin.next_line().await? {
            Some(l) if l.trim() == "check" => break,
            Some(_) => {}
            None => bail!("the parent closed stdin before `check`"),
        }
    }
    let lost = subs
        .iter()
        .filter(|s| s.joined.get() && !s.alive.get())
        .count() as u64;
    // The parent published one message into every room.
    for room in &stats.rooms {
        room.published.set(1);
    }
    super::drain(&stats, &subs, run.grace()).await;
    let missing = stats.missing(&subs);
    stdout.write_all(&line("done", missing, lost)?).await?;
    stdout.flush().await?;
    Ok(())
}
