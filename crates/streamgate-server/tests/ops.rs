//! Operations: `/healthz`, `/readyz`, `/metrics` in Prometheus format, JSON logs, and the
//! connection limit (`SERVER_OVERLOADED` beyond it, the others keep working).

mod common;

use std::{process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use common::{API_KEY, Server, command, http};
use serde_json::{Value, json};
use streamgate_protocol::WireFormat;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Parses the Prometheus text format strictly enough to catch malformed lines; returns the
/// value of each unlabelled sample and each labelled one under its full name.
fn samples(text: &str) -> Result<std::collections::HashMap<String, f64>> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            ensure!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "bad comment: {line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').context(line.to_owned())?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("bad value: {line}"))?;
        ensure!(
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()),
            "bad name: {line}"
        );
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

#[tokio::test]
async fn health_readiness_and_metrics() -> Result<()> {
    let server = Server::start(None, &[]).await?;
    let client = http();

    let health = client.get(server.url("/healthz")).send().await?;
    ensure!(health.status() == 200);
    ensure!(health.json::<Value>().await?["status"] == "ok");

    let ready = client.get(server.url("/readyz")).send().await?;
    ensure!(ready.status() == 200);
    let ready: Value = ready.json().await?;
    ensure!(
        ready["status"] == "ready" && ready["backplane"]["name"] == "local",
        "{ready}"
    );

    // Traffic that the counters must show: one client, one publication delivered to it.
    let token = common::token("alice", Some("acme")).await?;
    let mut ws =
        streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?;
    let room = "conversation:acme.1".parse()?;
    ws.join(&room, None).await?;
    let published = client
        .post(server.url("/api/v1/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"room": "conversation:acme.1", "event": "note", "data": {"n": 1}}))
        .send()
        .await?;
    ensure!(published.status() == 200, "{}", published.text().await?);
    ensure!(ws.publication().await?.event == "note");

    // The server records a delivery's latency once its write is flushed, which the client may
    // see first: give the metric a moment.
    for _ in 0..100 {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if samples(&text)?
            .get("streamgate_delivery_latency_seconds_count")
            .is_some_and(|v| *v >= 1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = client.get(server.url("/metrics")).send().await?;
    ensure!(metrics.status() == 200);
    let content_type = metrics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = metrics.text().await?;
    let s = samples(&text)?;
    ensure!(s.get("streamgate_connections") == Some(&1.0), "{text}");
    ensure!(
        s.get("streamgate_messages_out_total")
            .is_some_and(|v| *v >= 1.0),
        "{text}"
    );
    ensure!(
        s.get("streamgate_messages_in_total")
            .is_some_and(|v| *v >= 1.0),
        "{text}"
    );
    ensure!(
        s.contains_key("streamgate_errors_total{code=\"SERVER_OVERLOADED\"}"),
        "{text}"
    );
    ensure!(
        s.get("streamgate_delivery_latency_seconds_count")
            .is_some_and(|v| *v >= 1.0),
        "{text}"
    );
    ensure!(text.contains("streamgate_delivery_latency_seconds_bucket{le=\"+Inf\"}"));
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_as_overloaded() -> Result<()> {
    let server = Server::start(
        None,
        &[
            ("STREAMGATE_SERVER__MAX_CONNECTIONS", "2"),
            ("STREAMGATE_RATE_LIMITS__ENABLED", "false"),
        ],
    )
    .await?;
    let token = common::token("alice", Some("acme")).await?;
    let mut first =
        streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?;
    let second =
        streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?;

    // The third WebSocket handshake is answered 503 SERVER_OVERLOADED with Retry-After.
    let response = http()
        .get(server.url("/ws"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(response.status() == 503, "status {}", response.status());
    ensure!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await?;
    ensure!(body.to_string().contains("SERVER_OVERLOADED"), "{body}");

    // SSE too.
    let sse = http()
        .get(server.url("/sse?rooms=conversation:acme.1"))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(sse.status() == 503, "SSE status {}", sse.status());

    // The connected ones keep working.
    let room = "conversation:acme.2".parse()?;
    first.join(&room, None).await?;
    let published = http()
        .post(server.url("/api/v1/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"room": "conversation:acme.2", "event": "still.here"}))
        .send()
        .await?;
    ensure!(published.status() == 200);
    ensure!(first.publication().await?.event == "still.here");

    // A slot frees when a client leaves.
    second.kill();
    let mut admitted = false;
    for _ in 0..100 {
        if streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json)
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(admitted, "no slot after a client left");
    Ok(())
}

/// With a low open-file limit the server lowers `max_connections` to what the limit allows
/// (less a reserve), so that connections past it are refused with `SERVER_OVERLOADED` instead
/// of failing to be accepted, and the admitted ones keep working.
#[tokio::test]
async fn the_open_file_limit_caps_connections_cleanly() -> Result<()> {
    const NOFILE: usize = 600;
    let budget = NOFILE - streamgate_server::serve::DESCRIPTOR_RESERVE;
    let mut cmd = common::command_under(&["prlimit", &format!("--nofile={NOFILE}:{NOFILE}")], None);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("STREAMGATE_SERVER__MAX_CONNECTIONS", "100000")
        .env("STREAMGATE_RATE_LIMITS__ENABLED", "false");
    let server = Server::spawn(cmd).await?;
    let token = common::token("alice", Some("acme")).await?;
    let mut clients = Vec::with_capacity(budget);
    for _ in 0..budget {
        clients.push(
            streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?,
        );
    }
    for _ in 0..5 {
        let Err(refused) =
            streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await
        else {
            bail!("a connection past the descriptor budget of {budget} was admitted");
        };
        ensure!(
            format!("{refused:#}").contains("503"),
            "not refused as overloaded: {refused:#}"
        );
    }
    let room = "conversation:acme.3".parse()?;
    let Some(first) = clients.first_mut() else {
        bail!("no client");
    };
    first.join(&room, None).await?;
    let published = http()
        .post(server.url("/api/v1/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"room": "conversation:acme.3", "event": "still.here"}))
        .send()
        .await?;
    ensure!(published.status() == 200);
    ensure!(first.publication().await?.event == "still.here");
    Ok(())
}

#[tokio::test]
async fn json_logs_are_json() -> Result<()> {
    let mut cmd = command(None);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("no log line")??
        .context("the server exited")?;
    let record: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
    ensure!(
        record["level"].is_string() && record["fields"].is_object(),
        "{record}"
    );
    child.kill().await?;
    Ok(())
}
