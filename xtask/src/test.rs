//! `cargo xtask test`: the project's test command.

use std::path::Path;

use anyhow::Result;

use crate::step::Step;

/// Options of `cargo xtask test`.
#[derive(clap::Args, Default)]
pub(crate) struct Args {
    /// Arguments after `--`, passed on to the test binaries (e.g. `-- --nocapture`).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// Prepares the end-to-end environment, then runs every test of the workspace.
pub(crate) fn run(root: &Path, args: &Args) -> Result<()> {
    prepare_e2e(root)?;
    workspace_tests(root, &args.test_args)
}

/// Gets this machine ready for the end-to-end tests in `tests/`.
///
/// Idempotent: it runs before every test run and only does work that is missing. For now it
/// only checks that `cargo` works; later issues add the real clients' needs here: `npm ci` for
/// the Node clients (socket.io-client, playwright-core) and a check for Debian's chromium.
pub(crate) fn prepare_e2e(root: &Path) -> Result<()> {
    Step::cargo("prepare", root).args(["--version"]).run()
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
