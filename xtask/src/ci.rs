//! `cargo xtask ci`: every check CI makes, in order, with a timed summary.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::step::Step;
use crate::test;

/// Options of `cargo xtask ci`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Skip the tests (fmt, clippy, rustdoc and benchmark builds still run).
    #[arg(long)]
    no_test: bool,
}

/// The checks, cheapest first so that a formatting slip fails in seconds.
#[derive(Clone, Copy)]
enum Check {
    Fmt,
    Clippy,
    Test,
    Doc,
    BenchBuild,
}

impl Check {
    const ALL: [Self; 5] = [
        Self::Fmt,
        Self::Clippy,
        Self::Test,
        Self::Doc,
        Self::BenchBuild,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Fmt => "fmt",
            Self::Clippy => "clippy",
            Self::Test => "test",
            Self::Doc => "doc",
            Self::BenchBuild => "bench-build",
        }
    }

    fn run(self, root: &Path) -> Result<()> {
        match self {
            Self::Fmt => Step::cargo("fmt", root)
                .args(["fmt", "--all", "--", "--check"])
                .run(),
            Self::Clippy => Step::cargo("clippy", root)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--locked",
                ])
                .args(["--", "-D", "warnings"])
                .run(),
            Self::Test => test::run(root, &test::Args::default()),
            // `missing_docs` and broken intra-doc links warn locally and fail here.
            Self::Doc => Step::cargo("doc", root)
                .env("RUSTDOCFLAGS", "-D warnings")
                .args([
                    "doc",
                    "--workspace",
                    "--all-features",
                    "--no-deps",
                    "--locked",
                ])
                .run(),
            // Benchmarks are only built: timings on a shared CI machine mean nothing.
            Self::BenchBuild => Step::cargo("bench-build", root)
                .args(["bench", "--workspace", "--no-run", "--locked"])
                .run(),
        }
    }
}

enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped(&'static str),
}

/// Runs the checks in order, stopping at the first failure, and prints a summary either way.
pub(crate) fn run(root: &Path, args: &Args) -> Result<()> {
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(Check::ALL.len());
    let mut failure = None;
    for check in Check::ALL {
        let outcome = if failure.is_some() {
            Outcome::Skipped("not run: an earlier step failed")
        } else if args.no_test && matches!(check, Check::Test) {
            Outcome::Skipped("skipped: --no-test")
        } else {
            let check_started = Instant::now();
            match check.run(root) {
                Ok(()) => Outcome::Passed(check_started.elapsed()),
                Err(error) => {
                    failure = Some(error);
                    Outcome::Failed(check_started.elapsed())
                }
            }
        };
        outcomes.push((check.name(), outcome));
    }

    println!("\n[xtask ci] summary");
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Passed(took) => println!("  ok    {name:<12} {}", seconds(*took)),
            Outcome::Failed(took) => println!("  FAIL  {name:<12} {}", seconds(*took)),
            Outcome::Skipped(why) => println!("  -     {name:<12} {why}"),
        }
    }
    println!("  total {:<12} {}", "", seconds(started.elapsed()));

    failure.map_or(Ok(()), Err)
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
