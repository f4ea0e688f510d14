//! The official `socket.io-client`, driven through `tests/node/socketio-client.mjs` (see the
//! script's header for its arguments and the JSON lines it prints).

use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use streamgate_protocol::{Publication, ServerFrame, WireFormat};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::{STEP_TIMEOUT, browser::node_dir};

/// One `node socketio-client.mjs` process and the JSON lines it printed.
pub struct NodeClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
}

impl NodeClient {
    /// Starts `node socketio-client.mjs <url> <token> <args…>`.
    pub async fn spawn(url: &str, token: &str, args: &[String]) -> Result<Self> {
        let mut child = Command::new("node")
            .arg(node_dir().join("socketio-client.mjs"))
            .arg(url)
            .arg(token)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start node socketio-client.mjs")?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        })
    }

    /// The next line; fails on a `fatal` line, on exit, or after [`STEP_TIMEOUT`].
    pub async fn next(&mut self) -> Result<Value> {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("no line from the client within {STEP_TIMEOUT:?}"))??
            .ok_or_else(|| anyhow!("the client exited; it printed {:#?}", self.seen))?;
        let value: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        if value["kind"] == "fatal" {
            bail!("client failed: {value}; before that: {:#?}", self.seen);
        }
        self.seen.push(value.clone());
        Ok(value)
    }

    /// The lines read so far.
    #[must_use]
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// Reads lines until one satisfies `done`, and returns it.
    pub async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Result<Value> {
        loop {
            let line = self.next().await?;
            if done(&line) {
                return Ok(line);
            }
        }
    }

    /// Reads up to the `done` line and checks that the process exits with success.
    pub async fn finish(mut self) -> Result<Vec<Value>> {
        self.until(|l| l["kind"] == "done" || l["kind"] == "connect_error")
            .await?;
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .map_err(|_| anyhow!("the client did not exit"))??;
        ensure!(status.success(), "client exited with {status}");
        Ok(self.seen)
    }
}

/// The answer to the client's `join`.
pub fn is_joined(line: &Value) -> bool {
    line["kind"] == "joined"
}

/// A server event named `event`.
pub fn is_event(line: &Value, event: &str) -> bool {
    line["kind"] == "event" && line["event"] == event
}

/// A `stream.*` event line as the publication it carries: its payload is the publication as
/// the JSON codec writes it.
pub fn publication(line: &Value) -> Option<Result<(String, Publication)>> {
    let event = line["event"].as_str()?;
    if line["kind"] != "event" || !event.starts_with("stream.") {
        return None;
    }
    Some((|| {
        let bytes = serde_json::to_vec(&line["data"])?;
        match WireFormat::Json.decode_server(&bytes, usize::MAX)? {
            ServerFrame::Publication(p) => Ok((event.to_owned(), p)),
            other => bail!("{event} carried {other:?}"),
        }
    })())
}
