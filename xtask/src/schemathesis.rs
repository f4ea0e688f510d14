//! The HTTP API's conformance to its own OpenAPI document, checked by
//! [schemathesis](https://schemathesis.readthedocs.io) against the real `streamgate-server`
//! binary: no server error; status codes, content types, bodies and headers as documented; the
//! API key enforced; undocumented methods refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Listening, build_binaries};
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
    let [binary] = build_binaries(
        "schemathesis",
        root,
        &[("streamgate-server", "streamgate-server")],
        false,
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("step `schemathesis` failed: no server binary"))?;
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
    println!(
        "\n[xtask schemathesis] starting {} on a free port",
        binary.display()
    );
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("STREAMGATE_DEV_API_KEY", API_KEY)
        .env("STREAMGATE_DEV_SECRET", DEV_SECRET)
        .env_remove("STREAMGATE_CONFIG")
        .env("RUST_LOG", "error");
    let server = Listening::start("schemathesis", command, START_TIMEOUT)?;
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
    server.stop(Duration::from_secs(5));
    outcome
}
