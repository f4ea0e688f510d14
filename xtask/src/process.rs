//! Programs that xtask builds and starts: release or debug binaries located through cargo's
//! JSON messages, and servers that announce `listening on http://ADDR` on stdout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::step::Step;

/// Builds `bins` (package, binary) with `cargo build --locked` (in release with `release`) and
/// returns their paths, in the same order.
pub(crate) fn build_binaries(
    step: &'static str,
    root: &Path,
    bins: &[(&str, &str)],
    release: bool,
) -> Result<Vec<PathBuf>> {
    let mut cargo = Step::cargo(step, root).args([
        "build",
        "--locked",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cargo = cargo.args(["--release"]);
    }
    for (package, bin) in bins {
        cargo = cargo.args(["--package", package, "--bin", bin]);
    }
    let messages = cargo.output()?;
    bins.iter()
        .map(|(_, bin)| {
            let name = format!(r#""name":"{bin}""#);
            messages
                .lines()
                .filter(|line| {
                    line.contains(r#""reason":"compiler-artifact""#)
                        && line.contains(&name)
                        && line.contains(r#""kind":["bin"]"#)
                })
                .find_map(|line| {
                    let rest = line.split(r#""executable":""#).nth(1)?;
                    rest.split('"').next().map(PathBuf::from)
                })
                .with_context(|| {
                    format!("step `{step}` failed: cargo reported no `{bin}` executable")
                })
        })
        .collect()
}

/// A server process that printed `listening on http://ADDR`; stopped (SIGTERM, then killed)
/// when dropped.
pub(crate) struct Listening {
    child: Child,
    /// `host:port` it listens on.
    pub(crate) addr: String,
}

impl Listening {
    /// Starts `command` with stdout piped, and waits up to `within` for its listening line.
    /// Stdout is drained afterwards so the server never blocks on a full pipe.
    pub(crate) fn start(step: &str, mut command: Command, within: Duration) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("step `{step}` failed: cannot start {command:?}"))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("step `{step}` failed: no stdout");
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
        };
        match rx.recv_timeout(within) {
            Ok(addr) => server.addr = addr,
            Err(_) => bail!("step `{step}` failed: {command:?} did not listen within {within:?}"),
        }
        Ok(server)
    }

    /// The process id (of the server itself when it was started through `taskset`, which
    /// execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop (SIGTERM), gives it `grace`, then kills it; reaps it either way.
    pub(crate) fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
