//! The `streamgate-server` binary as the tests run it: a real process on a free loopback port,
//! with a configuration file and fixed development credentials.

#![allow(dead_code, unreachable_pub)] // Each test file uses part of it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The development API key the tests start the server with.
pub const API_KEY: &str = "sgk_test_0123456789abcdef";
/// The development JWT secret the tests start the server with.
pub const DEV_SECRET: &str = "test-dev-secret-0123456789abcdef0123456789";

/// The binary under test.
#[must_use]
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_streamgate-server")
}

/// A scratch directory for one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after `test`.
    pub fn new(test: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "streamgate-server-{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// Writes `text` to `name` in the directory.
    pub fn file(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `streamgate-server serve`.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    /// Lines it printed on stdout after the listening line.
    pub output: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// A base command with the test credentials, on a free port unless the config says otherwise.
pub fn command(config: Option<&Path>) -> Command {
    command_under(&[], config)
}

/// [`command`] run by a wrapper program (`["prlimit", "--nofile=600:600"]`).
pub fn command_under(wrapper: &[&str], config: Option<&Path>) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(binary());
            cmd
        }
        None => Command::new(binary()),
    };
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.env("STREAMGATE_DEV_API_KEY", API_KEY)
        .env("STREAMGATE_DEV_SECRET", DEV_SECRET)
        .env_remove("STREAMGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

impl Server {
    /// Starts the server with `config` (none: development defaults) and `env` overrides,
    /// listening on a free port, and waits until it listens.
    pub async fn start(config: Option<&Path>, env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = command(config);
        cmd.arg("serve");
        if !env.iter().any(|(k, _)| *k == "STREAMGATE_SERVER__LISTEN") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd).await
    }

    /// Spawns a prepared `serve` command and waits for its listening line.
    pub async fn spawn(mut cmd: Command) -> Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("spawn streamgate-server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split(" listening on http://").nth(1) {
                    return rest.trim().parse::<SocketAddr>().context("address");
                }
            }
            bail!("the server exited before listening")
        })
        .await
        .context("the server did not start listening in 30 s")??;
        let (tx, output) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            addr,
            child,
            output,
        })
    }

    /// `http://addr{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://addr/ws?token=…`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("the server has exited")
    }

    /// Sends SIGTERM and waits (up to `within`) for a clean exit.
    pub async fn terminate(mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.pid()?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        tokio::time::timeout(within, self.child.wait())
            .await
            .context("the server did not exit after SIGTERM")?
            .context("wait")
    }
}

/// A client for the HTTP API with the test key.
#[must_use]
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("reqwest client: {e}"))
}

/// A development JWT for `user` in `tenant`, minted by the binary's `token` command.
pub async fn token(user: &str, tenant: Option<&str>) -> Result<String> {
    let mut cmd = command(None);
    cmd.args(["token", "--user", user]);
    if let Some(tenant) = tenant {
        cmd.args(["--tenant", tenant]);
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        bail!("token: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
