//! `cargo xtask bench`: the benchmarks, and where their results are recorded.

use std::path::Path;

use anyhow::Result;

use crate::step::Step;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Arguments after `--`, passed on to the benchmark binaries (e.g. `-- --sample-count 50`).
    #[arg(last = true)]
    bench_args: Vec<String>,
}

/// Where results are written down, with the machine and commit they came from.
const RESULTS: &str = "docs/benchmarks.md";

/// Micro-benchmarks: one `[[bench]]` target of one package each.
const MICRO: &[MicroBench] = &[MicroBench {
    package: "streamgate-core",
    bench: "fanout",
}];

struct MicroBench {
    package: &'static str,
    bench: &'static str,
}

/// Runs the micro-benchmarks, then says where to record the numbers.
///
/// The load-generator scenarios (real clients against a running server, and against the
/// Node socket.io peer in `bench/peers/`) come as a second phase after the micro-benchmarks.
pub(crate) fn run(root: &Path, args: &Args) -> Result<()> {
    micro(root, &args.bench_args)?;
    println!(
        "\n[xtask bench] record the results in {} (with the machine, the commit and the command)",
        root.join(RESULTS).display()
    );
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
