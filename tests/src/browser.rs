//! Headless Debian chromium driven through playwright-core (`tests/node/browser.mjs`), for
//! the tests of the JavaScript-facing transports.

use std::{path::PathBuf, process::Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::STEP_TIMEOUT;

/// Environment variable that makes a missing prerequisite a failure instead of a skip.
pub const REQUIRE_ENV: &str = "STREAMGATE_E2E_REQUIRE";

/// The `tests/node` folder with the npm clients.
#[must_use]
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Checks what a real-client test needs. `Ok(true)`: go ahead. `Ok(false)`: something is
/// missing and the test should return early (a loud `SKIPPED` line was printed). `Err`: it is
/// missing and [`REQUIRE_ENV`] is `1`.
pub fn prerequisites(test: &str, chromium: bool) -> Result<bool> {
    let mut missing = Vec::new();
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("node".to_owned());
    }
    for package in ["socket.io-client", "playwright-core"] {
        if !node_dir().join("node_modules").join(package).exists() {
            missing.push(format!(
                "tests/node/node_modules/{package} (run `cargo xtask test`, which runs npm ci)"
            ));
        }
    }
    if chromium && !std::path::Path::new("/usr/bin/chromium").exists() {
        missing.push("/usr/bin/chromium (apt-get install -y chromium)".to_owned());
    }
    if missing.is_empty() {
        return Ok(true);
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        bail!("{test}: missing {}", missing.join(", "));
    }
    eprintln!("\n!!! SKIPPED {test}: missing {} !!!\n", missing.join(", "));
    Ok(false)
}

/// A chromium page under the test's control.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Browser {
    /// Launches chromium and opens `{base}/test/page.html`.
    pub async fn open(base: &str) -> Result<Self> {
        Self::open_page(base, "/test/page.html").await
    }

    /// Launches chromium (1280x800) and opens `{base}{path}`.
    pub async fn open_page(base: &str, path: &str) -> Result<Self> {
        let mut child = Command::new("node")
            .arg(node_dir().join("browser.mjs"))
            .arg(base)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start node browser.mjs")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut browser = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        };
        let ready = browser.line().await?;
        if ready.get("ready") != Some(&Value::Bool(true)) {
            bail!("browser did not start: {ready}");
        }
        Ok(browser)
    }

    async fn line(&mut self) -> Result<Value> {
        let line = tokio::time::timeout(STEP_TIMEOUT * 3, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("browser gave no answer"))??
            .ok_or_else(|| anyhow!("browser exited"))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expr: &str) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({ "id": id, "expr": expr }).to_string();
        self.stdin.write_all(request.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        let answer = self.line().await?;
        if answer.get("id") != Some(&Value::from(id)) {
            bail!("out of order answer {answer}");
        }
        match answer.get("error") {
            Some(error) => bail!("{expr}: {error}"),
            None => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Saves a PNG screenshot of the whole page to `file`.
    pub async fn screenshot(&mut self, file: &std::path::Path) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({ "id": id, "screenshot": file }).to_string();
        self.stdin.write_all(request.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        let answer = self.line().await?;
        if let Some(error) = answer.get("error") {
            bail!("screenshot: {error}");
        }
        Ok(())
    }

    /// Closes the browser.
    pub async fn close(mut self) -> Result<()> {
        drop(self.stdin);
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.child.wait()).await;
        Ok(())
    }
}

/// Routes for the browser tests: the test page (`/test/page.html`) and the socket.io-client
/// browser bundle from npm (`/test/socket.io.min.js`), to merge into the gateway's router.
pub fn test_pages() -> Result<axum::Router> {
    use axum::{response::Html, routing::get};
    let bundle = std::fs::read_to_string(
        node_dir().join("node_modules/socket.io-client/dist/socket.io.min.js"),
    )?;
    Ok(axum::Router::new()
        .route(
            "/test/page.html",
            get(|| async { Html(include_str!("../browser/page.html")) }),
        )
        .route(
            "/test/socket.io.min.js",
            get(move || {
                let bundle = bundle.clone();
                async move { ([("content-type", "text/javascript")], bundle) }
            }),
        ))
}
