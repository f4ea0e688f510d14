//! `streamgate-bench`: the load generator behind `cargo xtask bench`.
//!
//! It opens many real client connections over loopback to a server started by someone else
//! (streamgate on WebSocket JSON/bincode, SSE or Socket.IO, or a Socket.IO peer), drives one
//! scenario, and prints one JSON object on stdout; progress goes to stderr. One process, one
//! thread (`current_thread` runtime, `Rc`/`Cell` state), meant to be pinned to one core.
//!
//! ```text
//! streamgate-bench --system sg-ws-json --scenario fanout --url http://127.0.0.1:8080 \
//!     --secret S --server-pid 1234 --connections 10000
//! ```
//!
//! See the README for the systems, the scenarios and the result.

#![forbid(unsafe_code)]

mod client;
mod net;
mod payload;
mod probe;
mod report;
mod scenario;
mod sse;
mod stats;
mod ws;

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;

use crate::client::System;
use crate::report::Report;

/// The scenario to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// N subscribers in one room; closed loop, then a fixed offered rate.
    Fanout,
    /// Rooms of a few members who all publish into their room.
    Chat,
    /// Token streams: a few publishers, each stream watched by a few viewers.
    Llm,
    /// Many idle connections: memory per connection, then a liveness check.
    Idle,
    /// N clients connecting at once.
    Storm,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Chat => "chat",
            Self::Llm => "llm",
            Self::Idle => "idle",
            Self::Storm => "storm",
        }
    }
}

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Load generator for streamgate and its Socket.IO peers"
)]
pub(crate) struct Args {
    /// System under test.
    #[arg(long, value_enum)]
    pub(crate) system: System,
    /// Scenario.
    #[arg(long, value_enum)]
    pub(crate) scenario: Scenario,
    /// Server base URL, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    pub(crate) url: String,
    /// HS256 secret to sign client tokens with.
    #[arg(long)]
    pub(crate) secret: String,
    /// The server's pid, for CPU and RSS from /proc.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Client connections (fanout, storm: 10000; idle: 19000).
    #[arg(long)]
    pub(crate) connections: Option<usize>,
    /// Rooms (chat: 1000, llm: 200, idle: connections/100).
    #[arg(long)]
    pub(crate) rooms: Option<usize>,
    /// Members per room (chat: 10, llm: 5 viewers).
    #[arg(long)]
    pub(crate) members: Option<usize>,
    /// Fanout: publications outstanding in the closed loop.
    #[arg(long, default_value_t = 4)]
    pub(crate) in_flight: usize,
    /// Warm-up before the measured window, s.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup_secs: f64,
    /// Measured window, s.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration_secs: f64,
    /// Fanout phase 2: offered deliveries per second (0: skip).
    #[arg(long, default_value_t = 30_000.0)]
    pub(crate) fixed_rate: f64,
    /// Chat: each member publishes every this many ms.
    #[arg(long, default_value_t = 2000)]
    pub(crate) interval_ms: u64,
    /// Llm: tokens per stream per second.
    #[arg(long, default_value_t = 50.0)]
    pub(crate) rate: f64,
    /// Llm: publisher connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) publishers: usize,
    /// Idle: hold the connections this long before the liveness check, s.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) hold_secs: f64,
    /// Idle: split the connections over this many processes (open files per process).
    #[arg(long, default_value_t = 1)]
    pub(crate) processes: usize,
    /// Internal: run as worker `I/K` of a multi-process idle run.
    #[arg(long, hide = true)]
    pub(crate) worker: Option<String>,
    /// Handshakes in flight while connecting (not storm).
    #[arg(long, default_value_t = 200)]
    pub(crate) concurrency: usize,
    /// Give up on one connection attempt after this long, s.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) connect_timeout_secs: f64,
    /// After publishing stops, wait this long for the last deliveries, s.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) grace_secs: f64,
    /// Room kind: rooms are `KIND:r0`, `KIND:r1` …
    #[arg(long, default_value = "bench")]
    pub(crate) room_kind: String,
    /// Hard deadline for the whole run, s.
    #[arg(long, default_value_t = 120.0)]
    pub(crate) max_secs: f64,
}

/// What every scenario shares.
#[derive(Debug)]
pub(crate) struct Run {
    /// The command line.
    pub(crate) args: Args,
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Signs tokens.
    key: jsonwebtoken::EncodingKey,
    /// The result being built (printed even when the deadline cuts the run short).
    pub(crate) report: RefCell<Report>,
}

impl Run {
    /// The run of `args` against `addr`.
    pub(crate) fn new(args: Args, addr: SocketAddr, report: Report) -> Self {
        let key = jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes());
        Self {
            args,
            addr,
            key,
            report: RefCell::new(report),
        }
    }

    /// The system under test.
    pub(crate) fn system(&self) -> System {
        self.args.system
    }

    /// Room `i`'s id.
    pub(crate) fn room(&self, i: usize) -> String {
        format!("{}:r{i}", self.args.room_kind)
    }

    /// An HS256 JWT for user `sub`, valid for an hour.
    pub(crate) fn token(&self, sub: &str) -> Result<String> {
        let exp = payload::now_us() / 1_000_000 + 3600;
        let claims = serde_json::json!({ "sub": sub, "exp": exp });
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &self.key)
            .context("sign a token")
    }

    /// The server's pid.
    pub(crate) fn server_pid(&self) -> Option<u32> {
        self.args.server_pid
    }

    /// Timeout of one connection attempt.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.args.connect_timeout_secs.max(0.1))
    }

    /// The grace period for late deliveries.
    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.args.grace_secs.max(0.0))
    }
}

/// Resolves `http://HOST:PORT[/]` and refuses anything that is not loopback.
pub(crate) fn loopback_addr(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .with_context(|| format!("--url {url:?}: expected http://HOST:PORT"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: cannot resolve {authority:?}"))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        bail!("--url {url:?}: {authority:?} resolves to nothing");
    };
    if let Some(other) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!("--url {url:?}: {other} is not a loopback address; this tool only loads loopback");
    }
    Ok(first)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open files limit: {n}"),
        Err(e) => eprintln!("cannot raise the open files limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.worker.is_some() {
        return match runtime
            .block_on(tokio::task::LocalSet::new().run_until(scenario::idle::worker(args)))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (report, code) = runtime.block_on(tokio::task::LocalSet::new().run_until(run(args)));
    match serde_json::to_string(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("cannot encode the result: {e}");
            return ExitCode::FAILURE;
        }
    }
    code
}

/// Runs the scenario under the deadline; the report and the exit code.
async fn run(args: Args) -> (Report, ExitCode) {
    let mut report = Report {
        system: args.system.name().to_owned(),
        scenario: args.scenario.name().to_owned(),
        ..Report::default()
    };
    let addr = match loopback_addr(&args.url) {
        Ok(addr) => addr,
        Err(e) => {
            report.error = Some(format!("{e:#}"));
            return (report, ExitCode::from(2));
        }
    };
    let deadline = Duration::from_secs_f64(args.max_secs.max(1.0));
    let run = Rc::new(Run::new(args, addr, report));
    let outcome = tokio::time::timeout(deadline, scenario::run(&run)).await;
    let mut report = run.report.replace(Report::default());
    let code = match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            report.error = Some(format!("{e:#}"));
            ExitCode::FAILURE
        }
        Err(_) => {
            report.error = Some(format!("deadline of {} s exceeded", deadline.as_secs_f64()));
            ExitCode::from(3)
        }
    };
    if let Some(e) = &report.error {
        report.problems.push(e.clone());
    }
    report.ok = report.problems.is_empty();
    (report, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert!(loopback_addr("http://127.0.0.1:8080").is_ok());
        assert!(loopback_addr("http://127.0.0.1:8080/").is_ok());
        assert!(loopback_addr("http://[::1]:8080").is_ok());
        assert!(loopback_addr("http://10.0.0.1:8080").is_err());
        assert!(loopback_addr("127.0.0.1:8080").is_err());
    }
}
