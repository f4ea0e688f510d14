//! `cargo xtask deny`: dependency policy from `deny.toml`, checked with cargo-deny.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::step::Step;

/// Installs cargo-deny if needed, then checks bans, licenses and sources, and advisories when
/// the RustSec database is already on this machine (GitHub, where it lives, is not reachable).
pub(crate) fn run(root: &Path) -> Result<()> {
    ensure_cargo_deny(root)?;

    let mut step = Step::cargo("deny", root).args(["deny", "check"]);
    match advisory_db() {
        AdvisoryDb::Present(path) => {
            println!(
                "[xtask deny] RustSec database found at {}: checking advisories too, without fetching",
                path.display()
            );
            step = step.args(["--disable-fetch", "advisories"]);
        }
        AdvisoryDb::LegacyOnly(path) => println!(
            "[xtask deny] {} is the old single-clone layout (cargo-audit's); cargo-deny reads \
             {}: skipping advisories",
            path.display(),
            cargo_deny_db_root().display()
        ),
        AdvisoryDb::Absent => println!(
            "[xtask deny] no local RustSec database in {}: skipping advisories",
            cargo_deny_db_root().display()
        ),
    }
    step.args(["bans", "licenses", "sources"]).run()
}

fn ensure_cargo_deny(root: &Path) -> Result<()> {
    if Step::cargo("deny-probe", root)
        .args(["deny", "--version"])
        .probe()
    {
        return Ok(());
    }
    println!("[xtask deny] cargo-deny is not installed: building it (takes about 6 minutes here)");
    Step::cargo("deny-install", root)
        .args(["install", "cargo-deny", "--locked"])
        .run()
}

enum AdvisoryDb {
    Present(PathBuf),
    LegacyOnly(PathBuf),
    Absent,
}

fn advisory_db() -> AdvisoryDb {
    // cargo-deny clones each database into `<db-path>/<dir named after its url>`.
    let current = cargo_deny_db_root();
    if has_entries(&current) {
        return AdvisoryDb::Present(current);
    }
    let legacy = cargo_home().join("advisory-db");
    if has_entries(&legacy) {
        return AdvisoryDb::LegacyOnly(legacy);
    }
    AdvisoryDb::Absent
}

/// cargo-deny's default `db-path`; `deny.toml` does not override it.
fn cargo_deny_db_root() -> PathBuf {
    cargo_home().join("advisory-dbs")
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::home_dir().map(|home| home.join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}
