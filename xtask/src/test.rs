//! `cargo xtask test`: the project's test command.

use std::path::Path;

use anyhow::{Result, bail};

use crate::{schemathesis, step::Step};

/// Options of `cargo xtask test`.
#[derive(clap::Args, Default)]
pub(crate) struct Args {
    /// Arguments after `--`, passed on to the test binaries (e.g. `-- --nocapture`).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// Prepares the end-to-end environment, runs every test of the workspace, then checks the
/// server's HTTP API against its OpenAPI document with schemathesis.
pub(crate) fn run(root: &Path, args: &Args) -> Result<()> {
    let prepared = prepare_e2e(root)?;
    workspace_tests(root, &args.test_args)?;
    if prepared.schemathesis {
        schemathesis::run(root)
    } else {
        eprintln!(
            "\n[xtask schemathesis] SKIPPED: `{}` is not installed",
            schemathesis::PROGRAM
        );
        Ok(())
    }
}

/// What [`prepare_e2e`] found.
pub(crate) struct Prepared {
    /// Whether schemathesis (`st`) is installed.
    pub(crate) schemathesis: bool,
}

/// Environment variable that turns a missing end-to-end prerequisite (Node, the npm packages,
/// chromium, schemathesis) from a loud skip into a failure. `.ci/run` sets it; the tests read it
/// too.
pub(crate) const REQUIRE_ENV: &str = "STREAMGATE_E2E_REQUIRE";

/// Gets this machine ready for the end-to-end tests in `tests/`: installs the Node clients
/// (`npm ci` in `tests/node`, only when `node_modules` is missing or older than the lockfile)
/// and checks for Debian's chromium and for schemathesis (`pip install schemathesis`).
///
/// A missing prerequisite is reported loudly and the tests that need it skip themselves, unless
/// [`REQUIRE_ENV`] is `1`, in which case it is an error here already.
pub(crate) fn prepare_e2e(root: &Path) -> Result<Prepared> {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    let node_dir = root.join("tests/node");
    if node_dir.join("package.json").exists() {
        if Step::program("prepare", "node", root)
            .args(["--version"])
            .probe()
        {
            npm_ci_if_needed("prepare", &node_dir)?;
        } else {
            missing.push("node (Node.js 20 and npm): the Socket.IO and browser tests need it");
        }
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push("chromium (`apt-get install -y chromium`): the browser tests need it");
    }
    let schemathesis = schemathesis::available(root);
    if !schemathesis {
        missing.push(
            "schemathesis (`pip install schemathesis`, the `st` command): the HTTP API's OpenAPI conformance check needs it",
        );
    }
    for what in &missing {
        eprintln!("\n[xtask prepare] MISSING {what}");
    }
    if required && !missing.is_empty() {
        bail!("{REQUIRE_ENV}=1 and end-to-end prerequisites are missing");
    }
    if !missing.is_empty() {
        eprintln!("[xtask prepare] the tests that need them will print SKIPPED and pass\n");
    }
    Ok(Prepared { schemathesis })
}

/// Where Debian's chromium lives; the browser tests drive it with playwright-core.
const CHROMIUM: &str = "/usr/bin/chromium";

/// `npm ci` in `node_dir` for the step `step`, only when `node_modules` is missing or older
/// than the lockfile.
pub(crate) fn npm_ci_if_needed(step: &'static str, node_dir: &Path) -> Result<()> {
    if needs_npm_ci(node_dir) {
        Step::program(step, "npm", node_dir)
            .args(["ci", "--no-audit", "--no-fund"])
            .run()?;
    }
    Ok(())
}

fn needs_npm_ci(node_dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&node_dir.join("package-lock.json")),
        modified(&node_dir.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed < lock,
        _ => true,
    }
}

/// Unit, integration and doc tests of every crate, and the end-to-end tests of the `tests/`
/// package, with all features and the committed `Cargo.lock`.
fn workspace_tests(root: &Path, test_args: &[String]) -> Result<()> {
    let mut step =
        Step::cargo("test", root).args(["test", "--workspace", "--all-features", "--locked"]);
    if !test_args.is_empty() {
        step = step.args(["--"]).args(test_args);
    }
    step.run()
}
