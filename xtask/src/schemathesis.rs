//! The HTTP API's conformance to its own OpenAPI document, checked by
//! [schemathesis](https://schemathesis.readthedocs.io) against the real `streamgate-server`
//! binary: no server error; status codes, content types, bodies and headers as documented; the
//! API key enforced; undocumented methods refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::step::Step;

/// The schemathesis command line (`pip install schemathesis`).
pub(crate) const PROGRAM: &str = "st";

/// The development API key the server is started with, and schemathesis sends.
const API_KEY: &str = "sgk_schemathesis_0123456789abcdef";
/// The development JWT secret the server is started with (no client connects).
const DEV_SECRET: &str = "schemathesis-dev-secret-0123456789abcdef01234";

/// What every response is checked for: no 5xx; status codes, content types, bodies and headers
/// as documented; the API key enforced; undocumented methods answered 405 with `Allow`.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,ignored_auth,\
                      unsupported_method,allow_header_conformance";
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "40";
/// Schemathesis's own time budget, seconds: fuzzing repeats until it is spent.
const MAX_TIME_SECS: &str = "40";
/// Past this the run is killed and the step fails, whatever schemathesis does.
const HARD_LIMIT: Duration = Duration::from_secs(90);
/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `st` runs here.
pub(crate) fn available(root: &Path) -> bool {
    Step::program("prepare", PROGRAM, root)
        .args(["--version"])
        .probe()
}

/// Builds the server, starts it on a free loopback port with known development credentials,
/// runs schemathesis against its `/api/v1/openapi.json`, and stops it.
pub(crate) fn run(root: &Path) -> Result<()> {
    let binary = build(root)?;
    // Schemathesis and Hypothesis keep their caches (`.schemathesis/`, `.hypothesis/`) in the
    // working directory: in the target directory, not in the work tree. The crash cache makes a
    // failure found once be tried first the next time.
    let work_dir = binary
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| root.join("target"), Path::to_path_buf)
        .join("schemathesis");
    std::fs::create_dir_all(&work_dir).with_context(|| {
        format!(
            "step `schemathesis` failed: cannot create {}",
            work_dir.display()
        )
    })?;
    let server = RunningServer::start(&binary)?;
    let schema = format!("http://{}/api/v1/openapi.json", server.addr);
    let outcome = Step::program("schemathesis", PROGRAM, &work_dir)
        .args(["run", &schema])
        // Both credentials: schemathesis fills in every documented security scheme it is not
        // given, and a made-up `X-API-Key` is refused even next to a valid bearer key.
        .args(["--header", &format!("Authorization: Bearer {API_KEY}")])
        .args(["--header", &format!("X-API-Key: {API_KEY}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME_SECS])
        // One worker: Hypothesis's caches are not thread-safe (4.32.5 with 2 workers failed
        // once with a KeyError inside hypothesis.internal.cache).
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        .run_within(HARD_LIMIT);
    server.stop();
    outcome
}

/// `cargo build -p streamgate-server`; the binary's path.
fn build(root: &Path) -> Result<PathBuf> {
    let messages = Step::cargo("schemathesis", root)
        .args([
            "build",
            "--package",
            "streamgate-server",
            "--bin",
            "streamgate-server",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .output()?;
    messages
        .lines()
        .filter(|line| {
            line.contains(r#""reason":"compiler-artifact""#)
                && line.contains(r#""name":"streamgate-server""#)
                && line.contains(r#""kind":["bin"]"#)
        })
        .find_map(|line| {
            let rest = line.split(r#""executable":""#).nth(1)?;
            rest.split('"').next().map(PathBuf::from)
        })
        .context("step `schemathesis` failed: cargo reported no streamgate-server executable")
}

/// The server under test, killed when dropped.
struct RunningServer {
    child: Child,
    addr: String,
}

impl RunningServer {
    fn start(binary: &Path) -> Result<Self> {
        println!(
            "\n[xtask schemathesis] starting {} on a free port",
            binary.display()
        );
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("STREAMGATE_DEV_API_KEY", API_KEY)
            .env("STREAMGATE_DEV_SECRET", DEV_SECRET)
            .env_remove("STREAMGATE_CONFIG")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "step `schemathesis` failed: cannot start {}",
                    binary.display()
                )
            })?;
        let Some(stdout) = child.stdout.take() else {
            bail!("step `schemathesis` failed: no stdout");
        };
        // Reads the listening line, then keeps draining stdout so that the server never blocks
        // on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split(" listening on http://").nth(1)
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
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(_) => bail!(
                "step `schemathesis` failed: the server did not listen within {START_TIMEOUT:?}"
            ),
        }
        Ok(server)
    }

    /// Kills the server and reaps it.
    fn stop(self) {
        drop(self);
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
