//! `cargo xtask bench`: the load scenarios (with `--micro`, the micro-benchmarks first)
//! against streamgate (each
//! transport), Socket.IO on Node and bare socketioxide, written to `docs/benchmarks.md` with a
//! plot. `--quick` is CI's smoke run: a small version of every scenario, once, reported under
//! the target directory; it fails on errors, never on speed.

mod load;
mod report;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::step::Step;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// CI's smoke run: every scenario small and once (about a minute);
    /// the report goes to `<target>/bench/quick.md`, not to the docs.
    #[arg(long)]
    quick: bool,
    /// Only this scenario (repeatable): fanout, fanout-1k, chat, llm, idle, storm, limit.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Only this system (repeatable): sg-ws-json, sg-ws-bincode, sg-sse, sg-socketio,
    /// socketioxide, node.
    #[arg(long = "system")]
    systems: Vec<String>,
    /// Repetitions of each scenario (default: 3, and 1 with `--quick`).
    #[arg(long)]
    reps: Option<usize>,
    /// Also run the micro-benchmarks (`cargo bench`), before the load scenarios.
    #[arg(long)]
    micro: bool,
    /// Skip the load scenarios.
    #[arg(long)]
    no_load: bool,
    /// Arguments after `--`, passed on to the micro-benchmark binaries (e.g. `-- --sample-count 50`).
    #[arg(last = true)]
    bench_args: Vec<String>,
}

/// Where results are written down, with the machine and commit they came from.
const RESULTS: &str = "docs/benchmarks.md";
/// The plot of the load scenarios.
const PLOT: &str = "docs/benchmarks-load.svg";
/// The generated part of [`RESULTS`] sits between these lines.
const BEGIN: &str = "<!-- xtask bench: generated from here -->";
const END: &str = "<!-- xtask bench: generated up to here -->";

/// Micro-benchmarks: one `[[bench]]` target of one package each.
const MICRO: &[MicroBench] = &[MicroBench {
    package: "streamgate-core",
    bench: "fanout",
}];

struct MicroBench {
    package: &'static str,
    bench: &'static str,
}

/// Runs the micro-benchmarks when asked, then the load scenarios, and writes the report.
pub(crate) fn run(root: &Path, args: &Args) -> Result<()> {
    for scenario in &args.scenarios {
        if !load::SCENARIOS.iter().any(|s| s.key == scenario) {
            bail!("unknown scenario `{scenario}`");
        }
    }
    for system in &args.systems {
        if !load::SYSTEMS.iter().any(|s| s.id == system) {
            bail!("unknown system `{system}`");
        }
    }
    if args.micro {
        micro(root, &args.bench_args)?;
    }
    if args.no_load {
        return Ok(());
    }
    let options = load::Options {
        quick: args.quick,
        scenarios: args.scenarios.clone(),
        systems: args.systems.clone(),
        reps: args.reps,
    };
    let outcome = load::run(root, &options)?;
    let context = context(root, args, &outcome);
    let markdown = report::markdown(&outcome, &context);
    let svg = report::svg(&outcome);
    let out_dir = target_dir(root).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let raw: Vec<serde_json::Value> = outcome
        .runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario, "system": r.system,
                "result": r.result, "problems": r.problems,
            })
        })
        .collect();
    std::fs::write(
        out_dir.join(if args.quick {
            "quick.json"
        } else {
            "results.json"
        }),
        serde_json::to_string_pretty(&raw)?,
    )?;
    let complete = !args.quick && args.scenarios.is_empty() && args.systems.is_empty();
    if complete {
        std::fs::write(root.join(PLOT), &svg)?;
        write_section(&root.join(RESULTS), &markdown)?;
        println!(
            "\n[xtask bench] wrote {} and {}",
            root.join(RESULTS).display(),
            root.join(PLOT).display()
        );
    } else {
        let name = if args.quick { "quick" } else { "partial" };
        std::fs::write(out_dir.join(format!("{name}.svg")), &svg)?;
        std::fs::write(out_dir.join(format!("{name}.md")), &markdown)?;
        println!("\n{markdown}");
        println!(
            "[xtask bench] a {name} run: wrote {} (the docs are written by the full run only)",
            out_dir.join(format!("{name}.md")).display()
        );
    }
    println!(
        "[xtask bench] load scenarios took {:.0} s",
        outcome.elapsed.as_secs_f64()
    );
    let failed: Vec<String> = outcome
        .runs
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| format!("{} · {}: {}", r.scenario, r.system, r.problems.join("; ")))
        .collect();
    if !failed.is_empty() {
        bail!(
            "step `bench` failed: {} run(s) reported problems:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

fn micro(root: &Path, bench_args: &[String]) -> Result<()> {
    for target in MICRO {
        let mut step = Step::cargo("bench", root).args([
            "bench",
            "-p",
            target.package,
            "--bench",
            target.bench,
        ]);
        if !bench_args.is_empty() {
            step = step.args(["--"]).args(bench_args);
        }
        step.run()?;
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// The first line a command prints, or `?`.
fn first_line(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// The version of `package` in a lockfile: `Cargo.lock` (`name = "…"` then `version = "…"`)
/// or `package-lock.json` (`"node_modules/…": { "version": "…"`).
fn locked_version(lockfile: &Path, package: &str) -> String {
    let Ok(text) = std::fs::read_to_string(lockfile) else {
        return "?".to_owned();
    };
    let markers = [
        format!("name = \"{package}\""),
        format!("\"node_modules/{package}\": {{"),
    ];
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if markers.iter().any(|m| line.trim() == m.as_str()) {
            for next in lines.by_ref().take(3) {
                let next = next.trim();
                if let Some(v) = next
                    .strip_prefix("version = \"")
                    .or_else(|| next.strip_prefix("\"version\": \""))
                {
                    return v.trim_end_matches([',', '"']).to_owned();
                }
            }
        }
    }
    "?".to_owned()
}

/// The machine, the versions, the commit and the commands, for the top of the report.
fn context(root: &Path, args: &Args, outcome: &load::Outcome) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |l| l.trim_start_matches([' ', '\t', ':']));
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or_else(|| "?".to_owned(), |kb| format!("{} GiB", kb / 1024 / 1024));
    let kernel = first_line("uname", &["-r"], root);
    let nofile = first_line("sh", &["-c", "ulimit -Hn"], root);
    let commit = first_line("git", &["rev-parse", "--short", "HEAD"], root);
    let dirty = !first_line(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        root,
    )
    .trim()
    .is_empty()
        && first_line(
            "git",
            &["status", "--porcelain", "--untracked-files=no"],
            root,
        ) != "?";
    let node_lock = root.join(load::NODE_PEER).join("package-lock.json");
    let cargo_lock = root.join("Cargo.lock");
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench{}` at commit `{commit}`{} in {:.0} s.\n",
        if args.quick { " --quick" } else { "" },
        if dirty { " (with local changes)" } else { "" },
        outcome.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "- Machine: {cpus} × {model}, {memory} RAM, Linux {kernel}, open-file limit {nofile} per process."
    );
    let _ = writeln!(
        md,
        "- Versions: {}; Node {}, socket.io {} (engine.io {}, ws {}); socketioxide {}; streamgate {}.",
        first_line("rustc", &["-V"], root),
        first_line("node", &["--version"], root),
        locked_version(&node_lock, "socket.io"),
        locked_version(&node_lock, "engine.io"),
        locked_version(&node_lock, "ws"),
        locked_version(&cargo_lock, "socketioxide"),
        locked_version(&cargo_lock, "streamgate-server"),
    );
    let _ = writeln!(
        md,
        "- Method: each run starts a fresh server {} and `streamgate-bench` {}; runs of the systems are interleaved, and each figure is the median of the runs (3 per scenario, 1 past the limit). Payloads are 64 bytes of JSON; every client has its own HS256 JWT; the fan-out publisher keeps 4 publications in flight (closed loop: one completes when every subscriber has it). streamgate runs `bench/streamgate.toml` (history kept, rate limits off); the peers are `bench/peers/`. Latency is send-to-receive on the same clock; server CPU and RSS come from `/proc/<pid>` over the measured window.",
        if outcome.pinned {
            "pinned to CPU 0 (`taskset -c 0`)"
        } else {
            "(not pinned: fewer than 2 CPUs or no taskset)"
        },
        if outcome.pinned {
            "pinned to CPU 1"
        } else {
            "unpinned"
        },
    );
    md.push_str("- Plot: [benchmarks-load.svg](benchmarks-load.svg).\n");
    if args.quick {
        md.push_str("- **Quick run**: every scenario scaled down to a few hundred clients and run once (`--quick` in `xtask/src/bench/load.rs`); the headings give the full run's sizes, and the targets apply to the full run only.\n");
    }
    md
}

/// Replaces the generated section of the results file (or appends it).
fn write_section(path: &Path, generated: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let section = format!("{BEGIN}\n\n{generated}\n{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{section}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))
}
