//! The load scenarios: each system (streamgate on each transport, Socket.IO on Node, bare
//! socketioxide) started fresh, pinned to one core, and driven by `streamgate-bench` pinned to
//! the other, repetitions interleaved so that drift in the machine hits every system alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process::{Listening, build_binaries};

/// The secret every system verifies client JWTs with.
pub(crate) const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
/// The API key streamgate is started with (the bench does not use the HTTP API).
const API_KEY: &str = "sgk_bench_0123456789abcdef";
/// streamgate's configuration for the scenarios.
pub(crate) const STREAMGATE_CONFIG: &str = "bench/streamgate.toml";
/// The Node peer.
pub(crate) const NODE_PEER: &str = "bench/peers/node";
/// How long a server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server a system runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Streamgate,
    Node,
    Socketioxide,
}

/// One column of the comparison: a server and the client protocol the generator speaks to it.
pub(crate) struct System {
    /// The generator's `--system`.
    pub(crate) id: &'static str,
    /// How the report names it.
    pub(crate) label: &'static str,
    pub(crate) server: Server,
}

/// Every system, in report order.
pub(crate) const SYSTEMS: &[System] = &[
    System {
        id: "sg-ws-json",
        label: "streamgate WebSocket (JSON)",
        server: Server::Streamgate,
    },
    System {
        id: "sg-ws-bincode",
        label: "streamgate WebSocket (bincode)",
        server: Server::Streamgate,
    },
    System {
        id: "sg-sse",
        label: "streamgate SSE",
        server: Server::Streamgate,
    },
    System {
        id: "sg-socketio",
        label: "streamgate Socket.IO",
        server: Server::Streamgate,
    },
    System {
        id: "socketioxide",
        label: "bare socketioxide",
        server: Server::Socketioxide,
    },
    System {
        id: "node",
        label: "Socket.IO on Node",
        server: Server::Node,
    },
];

/// One scenario: the generator's arguments in the full and the quick run.
pub(crate) struct Scenario {
    /// Key in the report (`fanout`, `fanout-1k`, …).
    pub(crate) key: &'static str,
    /// The generator's `--scenario`.
    pub(crate) generator: &'static str,
    /// What it measures, for the report.
    pub(crate) title: &'static str,
    pub(crate) full: &'static [&'static str],
    pub(crate) quick: &'static [&'static str],
    /// Systems it does not apply to, and why.
    pub(crate) skip: &'static [(&'static str, &'static str)],
    /// Only these systems (all when empty).
    pub(crate) only: &'static [&'static str],
    /// Repetitions in the full run (the quick run makes one); 0: only when asked for by name.
    pub(crate) reps: usize,
    /// Generator processes (`--processes`).
    pub(crate) processes: usize,
    /// The generator's own deadline, seconds.
    pub(crate) max_secs: u64,
}

/// The scenarios of the issue, (a) to (e), plus fan-out at 1,000 subscribers and the run past
/// the descriptor limit.
pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario {
        key: "fanout",
        generator: "fanout",
        title: "(a) fan-out: 10,000 subscribers in one room, 4 publications in flight; then a fixed 30,000 deliveries/s",
        full: &[
            "--connections",
            "10000",
            "--in-flight",
            "4",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "3",
            "--fixed-rate",
            "30000",
            "--grace-secs",
            "1",
        ],
        quick: &[
            "--connections",
            "500",
            "--in-flight",
            "4",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "1",
            "--fixed-rate",
            "5000",
        ],
        skip: &[],
        only: &[],
        reps: 3,
        processes: 1,
        max_secs: 90,
    },
    Scenario {
        key: "fanout-1k",
        generator: "fanout",
        title: "fan-out: 1,000 subscribers in one room, 4 publications in flight",
        full: &[
            "--connections",
            "1000",
            "--in-flight",
            "4",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "3",
            "--fixed-rate",
            "0",
            "--grace-secs",
            "1",
        ],
        quick: &[],
        skip: &[],
        only: &[],
        // Not in the default run (it would not fit in 15 minutes): `--scenario fanout-1k`.
        reps: 0,
        processes: 1,
        max_secs: 60,
    },
    Scenario {
        key: "chat",
        generator: "chat",
        title: "(b) chat: 1,000 rooms of 10 members, each member sending every 2 s (50,000 deliveries/s offered)",
        full: &[
            "--rooms",
            "1000",
            "--members",
            "10",
            "--interval-ms",
            "2000",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "3",
            // Saturated: p99 near 3 s, so late deliveries need time to arrive.
            "--grace-secs",
            "4",
        ],
        quick: &[
            "--rooms",
            "20",
            "--members",
            "5",
            "--interval-ms",
            "500",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "1",
        ],
        skip: &[(
            "sg-sse",
            "SSE is receive-only: its clients send commands as HTTP POSTs, not over the stream",
        )],
        only: &[],
        reps: 3,
        processes: 1,
        max_secs: 90,
    },
    Scenario {
        key: "llm",
        generator: "llm",
        title: "(c) LLM streams: 200 streams of 50 tokens/s, 5 viewers each (50,000 deliveries/s offered)",
        full: &[
            "--rooms",
            "200",
            "--members",
            "5",
            "--rate",
            "50",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "3",
            "--grace-secs",
            "1",
        ],
        quick: &[
            "--rooms",
            "10",
            "--members",
            "3",
            "--rate",
            "50",
            "--warmup-secs",
            "1",
            "--duration-secs",
            "1",
        ],
        skip: &[],
        only: &[],
        reps: 3,
        processes: 1,
        max_secs: 60,
    },
    Scenario {
        key: "idle",
        generator: "idle",
        title: "(d) idle: 19,000 connected clients, each in one of 190 rooms",
        full: &["--connections", "19000", "--hold-secs", "1"],
        quick: &["--connections", "500", "--hold-secs", "1"],
        skip: &[],
        only: &[],
        reps: 3,
        processes: 1,
        max_secs: 120,
    },
    Scenario {
        key: "storm",
        generator: "storm",
        title: "(e) connect storm: 10,000 clients connecting at once, each with its own JWT",
        full: &["--connections", "10000", "--connect-timeout-secs", "10"],
        quick: &["--connections", "500"],
        skip: &[],
        only: &[],
        reps: 3,
        processes: 1,
        max_secs: 90,
    },
    Scenario {
        key: "limit",
        generator: "idle",
        title: "past the descriptor limit: 20,500 clients (2 generator processes) against a server limited to 20,000 open files",
        full: &["--connections", "20500", "--hold-secs", "1"],
        quick: &[],
        skip: &[],
        only: &["sg-ws-json"],
        reps: 1,
        processes: 2,
        max_secs: 150,
    },
];

/// Options of the load phase.
pub(crate) struct Options {
    pub(crate) quick: bool,
    /// Only these scenario keys (all when empty).
    pub(crate) scenarios: Vec<String>,
    /// Only these system ids (all when empty).
    pub(crate) systems: Vec<String>,
    /// Repetitions instead of each scenario's own.
    pub(crate) reps: Option<usize>,
}

/// One generator run.
pub(crate) struct Run {
    pub(crate) scenario: &'static str,
    pub(crate) system: &'static str,
    /// The generator's JSON result, or `None` when the run failed.
    pub(crate) result: Option<Value>,
    /// Why it failed, or what streamgate reported as problems: these fail the bench.
    pub(crate) problems: Vec<String>,
}

/// Everything the load phase measured.
pub(crate) struct Outcome {
    pub(crate) runs: Vec<Run>,
    pub(crate) pinned: bool,
    pub(crate) elapsed: Duration,
}

/// Paths of what the scenarios run.
struct Programs {
    server: PathBuf,
    generator: PathBuf,
    socketioxide: PathBuf,
    node_peer: PathBuf,
    config: PathBuf,
}

/// Builds and prepares every system, then runs the selected scenarios.
pub(crate) fn run(root: &Path, options: &Options) -> Result<Outcome> {
    let started = Instant::now();
    let programs = prepare(root)?;
    let pinned = pinning_available();
    if !pinned {
        println!(
            "\n[xtask bench] WARNING: fewer than 2 CPUs or no taskset: server and generator are not pinned"
        );
    }
    let mut runs = Vec::new();
    for scenario in SCENARIOS {
        if !options.scenarios.is_empty() && !options.scenarios.iter().any(|s| s == scenario.key) {
            continue;
        }
        let args = if options.quick {
            scenario.quick
        } else {
            scenario.full
        };
        if args.is_empty() {
            continue;
        }
        let named = options.scenarios.iter().any(|s| s == scenario.key);
        if scenario.reps == 0 && !named {
            continue;
        }
        let reps = options.reps.unwrap_or(if options.quick {
            1
        } else {
            scenario.reps.max(1)
        });
        let systems: Vec<&System> = SYSTEMS
            .iter()
            .filter(|s| scenario.only.is_empty() || scenario.only.contains(&s.id))
            .filter(|s| !scenario.skip.iter().any(|(id, _)| *id == s.id))
            .filter(|s| options.systems.is_empty() || options.systems.iter().any(|o| o == s.id))
            .collect();
        for rep in 0..reps {
            for system in &systems {
                println!(
                    "\n[xtask bench] {} · {} · run {}/{reps}",
                    scenario.key,
                    system.id,
                    rep + 1
                );
                runs.push(run_one(&programs, scenario, system, args, pinned));
            }
        }
    }
    Ok(Outcome {
        runs,
        pinned,
        elapsed: started.elapsed(),
    })
}

fn prepare(root: &Path) -> Result<Programs> {
    let [server, generator, socketioxide] = build_binaries(
        "bench",
        root,
        &[
            ("streamgate-server", "streamgate-server"),
            ("streamgate-bench", "streamgate-bench"),
            ("bench-peer-socketioxide", "bench-peer-socketioxide"),
        ],
        true,
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("step `bench` failed: missing binaries"))?;
    let node_dir = root.join(NODE_PEER);
    crate::test::npm_ci_if_needed("bench", &node_dir)?;
    Ok(Programs {
        server,
        generator,
        socketioxide,
        node_peer: node_dir.join("server.js"),
        config: root.join(STREAMGATE_CONFIG),
    })
}

/// Whether the server and the generator can each get a core of their own.
fn pinning_available() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cpus >= 2
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `program` pinned to `cpu` when pinning is available.
fn pinned_command(program: &Path, cpu: &str, pinned: bool) -> Command {
    if pinned {
        let mut command = Command::new("taskset");
        command.args(["-c", cpu]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_server(programs: &Programs, system: &System, pinned: bool) -> Result<Listening> {
    let command = match system.server {
        Server::Streamgate => {
            let mut command = pinned_command(&programs.server, "0", pinned);
            command
                .arg("--config")
                .arg(&programs.config)
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env("STREAMGATE_DEV_SECRET", SECRET)
                .env("STREAMGATE_DEV_API_KEY", API_KEY)
                .env_remove("STREAMGATE_CONFIG")
                .env("RUST_LOG", "warn");
            command
        }
        Server::Socketioxide => {
            let mut command = pinned_command(&programs.socketioxide, "0", pinned);
            command.args(["--listen", "127.0.0.1:0", "--secret", SECRET]);
            command
        }
        Server::Node => {
            let mut command = pinned_command(Path::new("node"), "0", pinned);
            command
                .arg(&programs.node_peer)
                .args(["--listen", "127.0.0.1:0", "--secret", SECRET])
                .env("NODE_ENV", "production");
            command
        }
    };
    Listening::start("bench", command, START_TIMEOUT)
}

fn run_one(
    programs: &Programs,
    scenario: &'static Scenario,
    system: &'static System,
    args: &[&str],
    pinned: bool,
) -> Run {
    let mut run = Run {
        scenario: scenario.key,
        system: system.id,
        result: None,
        problems: Vec::new(),
    };
    match measure(programs, scenario, system, args, pinned) {
        Ok(result) => {
            // What a peer fails at (clients that could not connect to Node in the storm) is a
            // result to report; only streamgate's own problems and broken runs fail the bench.
            if system.server == Server::Streamgate
                && result.get("ok").and_then(Value::as_bool) != Some(true)
            {
                let problems = result
                    .get("problems")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .collect()
                    })
                    .unwrap_or_else(|| vec!["the generator did not report ok".to_owned()]);
                run.problems = problems;
            }
            run.result = Some(result);
        }
        Err(error) => run.problems.push(format!("{error:#}")),
    }
    for problem in &run.problems {
        println!(
            "[xtask bench] PROBLEM {} · {}: {problem}",
            scenario.key, system.id
        );
    }
    run
}

fn measure(
    programs: &Programs,
    scenario: &Scenario,
    system: &System,
    args: &[&str],
    pinned: bool,
) -> Result<Value> {
    let server = start_server(programs, system, pinned)?;
    let mut generator = pinned_command(&programs.generator, "1", pinned);
    generator
        .args(["--system", system.id, "--scenario", scenario.generator])
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["--secret", SECRET])
        .args(["--server-pid", &server.pid().to_string()])
        .args(["--max-secs", &scenario.max_secs.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if scenario.processes > 1 {
        generator.args(["--processes", &scenario.processes.to_string()]);
    }
    let shown = format!("{generator:?}");
    println!("[xtask bench] $ {}", shown.replace('"', ""));
    let child = generator
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let output = wait_with_limit(child, Duration::from_secs(scenario.max_secs + 30))?;
    server.stop(Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
    else {
        bail!("the generator printed no result ({})", output.status);
    };
    let result: Value = serde_json::from_str(line).context("the generator's result is not JSON")?;
    if !output.status.success() {
        let mut problems = vec![format!("the generator exited with {}", output.status)];
        if let Some(more) = result.get("problems").and_then(Value::as_array) {
            problems.extend(more.iter().map(ToString::to_string));
        }
        bail!("{}", problems.join("; "));
    }
    Ok(result)
}

/// Waits for `child`, killing it past `limit`.
fn wait_with_limit(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::Output> {
    let Some(mut stdout) = child.stdout.take() else {
        bail!("no stdout");
    };
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the generator still ran after {}s and was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(std::process::Output {
        status,
        stdout,
        stderr: Vec::new(),
    })
}
