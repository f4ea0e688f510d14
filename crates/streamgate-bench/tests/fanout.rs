//! A tiny `fanout` run against the real `streamgate-server` with the bench configuration: 50
//! WebSocket JSON subscribers, one second measured, every publication delivered exactly once.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

const SECRET: &str = "bench-test-secret-0123456789abcdef0123";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `streamgate-server` (same profile as this test) and returns its executable.
fn server_binary() -> Result<PathBuf> {
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "-p",
            "streamgate-server",
            "--bin",
            "streamgate-server",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !output.status.success() {
        bail!("cargo build -p streamgate-server failed");
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "streamgate-server"
            && let Some(exe) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build named no streamgate-server executable")
}

/// The server, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn start_server() -> Result<Server> {
    let mut child = Command::new(server_binary()?)
        .arg("--config")
        .arg(workspace().join("bench/streamgate.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("STREAMGATE_DEV_SECRET", SECRET)
        .env(
            "STREAMGATE_DEV_API_KEY",
            "sgk_dev_bench_test_key_0123456789",
        )
        .env_remove("STREAMGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start streamgate-server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(" listening on http://").nth(1) {
                let _gone = tx.send(rest.trim().to_owned());
            }
        }
    });
    let mut server = Server {
        child,
        addr: "127.0.0.1:0".parse()?,
    };
    server.addr = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not say where it listens")?
        .parse()
        .context("listening address")?;
    Ok(server)
}

#[test]
fn fanout_over_websocket_json_delivers_everything_once() -> Result<()> {
    let server = start_server()?;
    let output = Command::new(env!("CARGO_BIN_EXE_streamgate-bench"))
        .args(["--system", "sg-ws-json", "--scenario", "fanout"])
        .arg("--url")
        .arg(format!("http://{}", server.addr))
        .args(["--secret", SECRET])
        .arg("--server-pid")
        .arg(server.child.id().to_string())
        .args([
            "--connections",
            "50",
            "--warmup-secs",
            "0.5",
            "--duration-secs",
            "1",
        ])
        .args(["--fixed-rate", "500", "--max-secs", "60"])
        .stderr(Stdio::inherit())
        .output()
        .context("run streamgate-bench")?;
    let stdout = String::from_utf8(output.stdout)?;
    let result: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("stdout is not one JSON object: {stdout}"))?;
    assert!(output.status.success(), "exit {}: {result}", output.status);
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["connected"], 50, "{result}");
    assert_eq!(result["missing"], 0, "{result}");
    assert_eq!(result["duplicates"], 0, "{result}");
    assert!(result["deliveries"].as_u64().unwrap_or(0) > 0, "{result}");
    assert!(result["latency_us"]["p50"].as_u64().is_some(), "{result}");
    assert!(
        result["fixed_rate"]["deliveries"].as_u64().unwrap_or(0) > 0,
        "{result}"
    );
    assert!(result["server"]["cpu_percent"].is_number(), "{result}");
    Ok(())
}

#[test]
fn refuses_addresses_other_than_loopback() -> Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_streamgate-bench"))
        .args(["--system", "sg-ws-json", "--scenario", "fanout"])
        .args(["--url", "http://192.0.2.1:80", "--secret", SECRET])
        .stderr(Stdio::null())
        .output()?;
    assert!(!output.status.success());
    let result: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(result["ok"], false);
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("loopback")),
        "{result}"
    );
    Ok(())
}
