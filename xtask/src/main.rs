//! Project automation for streamgate, run as `cargo xtask <task>`.
//!
//! The alias in `.cargo/config.toml` builds and runs this binary, so every task works from any
//! directory inside the repository: commands run from the workspace root. Each external command
//! is printed before it runs, and the first one that fails stops the task with an error naming
//! its step.
//!
//! - `cargo xtask test`: the project's test command (unit, integration, doc and end-to-end tests,
//!   then the HTTP API against its OpenAPI document with schemathesis).
//! - `cargo xtask ci`: formatting, clippy, tests, rustdoc and benchmark builds, with timings.
//! - `cargo xtask deny`: licenses, bans and sources (and advisories when the database is local).
//! - `cargo xtask bench`: the benchmarks, and where to record their results.

mod bench;
mod ci;
mod deny;
mod process;
mod schemathesis;
mod step;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, ensure};
use clap::{Parser, Subcommand};

/// streamgate's project automation.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test: unit, integration, doctests, the end-to-end suite in `tests/`, and the
    /// HTTP API against its OpenAPI document (schemathesis).
    Test(test::Args),
    /// Run what CI checks: fmt, clippy, tests, rustdoc and benchmark builds, with timings.
    Ci(ci::Args),
    /// Check dependency licenses, bans and sources (advisories too when the database is local).
    Deny,
    /// Run the benchmarks and say where to record the results.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match workspace_root().and_then(|root| run(&root, cli.task)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with the causes: the step's name matters, a backtrace of xtask does not.
            eprintln!("\nerror: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(root: &Path, task: Task) -> Result<()> {
    match task {
        Task::Test(args) => test::run(root, &args),
        Task::Ci(args) => ci::run(root, &args),
        Task::Deny => deny::run(root),
        Task::Bench(args) => bench::run(root, &args),
    }
}

/// The workspace root: the parent of this package's directory.
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the process it starts; that value is preferred over
/// the one baked in at compile time because a target directory shared between clones (as CI's
/// cache is) may hold a binary built from another checkout.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir);
    ensure!(
        root.join("Cargo.toml").is_file() && root.join("xtask").is_dir(),
        "could not find the workspace root: {} has no Cargo.toml and xtask/; run through `cargo xtask`",
        root.display()
    );
    Ok(root)
}
