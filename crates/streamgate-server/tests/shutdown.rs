//! SIGTERM during a live stream: clients are told to reconnect (`SHUTTING_DOWN`), the server
//! saves its history and exits cleanly; after the restart, clients resume from their last
//! offsets and the run goes on, with every token exactly once.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{API_KEY, Scratch, Server, command, http};
use serde_json::{Value, json};
use streamgate_e2e::{Client, Event};
use streamgate_protocol::{ErrorCode, Publication, RoomId, ServerFrame, WireFormat};
use tokio::sync::mpsc;

const TOKENS: usize = 240;
const ROOM: &str = "execution:acme.run-sigterm";

/// Posts to the API until it answers 2xx, across the restart (connection refused, 503).
async fn post_until_ok(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value> {
    for _ in 0..600 {
        match client
            .post(url)
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(r.json().await?),
            Ok(r) if r.status() == 404 => {
                // The stream was not restored by the restart: open it again and retry.
                let open = client
                    .post(url.replace(&format!("/streams/{ROOM}/updates"), "/streams"))
                    .bearer_auth(API_KEY)
                    .json(&json!({ "room": ROOM }))
                    .send()
                    .await;
                if let Ok(open) = open {
                    ensure!(
                        open.status().is_success() || open.status() == 503,
                        "open: {}",
                        open.status()
                    );
                }
            }
            Ok(r) if r.status() == 503 => {}
            Ok(r) => bail!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the API did not come back")
}

/// One viewer: follows the room, reconnects after `SHUTTING_DOWN` with its last position, and
/// reports every publication it got until the terminal one.
async fn viewer(
    url: String,
    token: String,
    format: WireFormat,
    seen: mpsc::UnboundedSender<usize>,
    joined_once: mpsc::UnboundedSender<()>,
) -> Result<(Vec<Publication>, Vec<bool>)> {
    let room: RoomId = ROOM.parse()?;
    let mut got: Vec<Publication> = Vec::new();
    let mut resumes = Vec::new();
    let mut position: Option<(u64, u64)> = None;
    loop {
        let Ok(mut client) = Client::connect(&url, &token, format).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let joined = client
            .join(&room, position.map(|(epoch, offset)| (offset, Some(epoch))))
            .await?;
        if position.is_some() {
            resumes.push(joined.recovered);
        } else {
            let _ = joined_once.send(());
        }
        loop {
            match client.next_event().await {
                Ok(Event::Frame(ServerFrame::Publication(p))) => {
                    position = Some((p.epoch, p.offset));
                    let terminal = p.event == "stream.complete";
                    got.push(p);
                    let _ = seen.send(got.len());
                    if terminal {
                        return Ok((got, resumes));
                    }
                }
                Ok(Event::Frame(ServerFrame::Disconnect(d))) => {
                    ensure!(d.code == ErrorCode::ShuttingDown, "disconnected with {d:?}");
                    break;
                }
                Ok(Event::Frame(_)) => {}
                Ok(Event::Closed(_)) | Err(_) => break,
            }
        }
    }
}

fn tokens_of(publications: &[Publication]) -> Result<Vec<String>> {
    publications
        .iter()
        .filter(|p| p.event == "stream.token")
        .map(|p| {
            let v: Value = serde_json::from_str(p.data.as_str())?;
            v["text"].as_str().map(str::to_owned).context("token text")
        })
        .collect()
}

#[tokio::test]
async fn sigterm_mid_stream_then_restart_resumes_without_loss_or_duplicates() -> Result<()> {
    let dir = Scratch::new("sigterm")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let snapshot = dir.0.join("history.jsonl");
    let config = dir.file(
        "streamgate.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n\
             [history]\nsnapshot = \"{}\"\n\
             [rate_limits]\nenabled = false\n",
            snapshot.display()
        ),
    )?;
    let start = || async {
        let mut cmd = command(Some(&config));
        cmd.arg("serve");
        Server::spawn(cmd).await
    };
    let server = start().await?;
    let base = format!("http://127.0.0.1:{port}");
    let api = http();
    let opened = post_until_ok(
        &api,
        &format!("{base}/api/v1/streams"),
        &json!({ "room": ROOM }),
    )
    .await?;
    ensure!(opened["offset"] == 0, "{opened}");

    let token = common::token("viewer", Some("acme")).await?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let viewers: Vec<_> = [WireFormat::Json, WireFormat::Bincode]
        .into_iter()
        .map(|format| {
            tokio::spawn(viewer(
                url.clone(),
                token.clone(),
                format,
                seen_tx.clone(),
                joined_tx.clone(),
            ))
        })
        .collect();
    // Both viewers have joined the room before the first token (connected is not enough: a
    // plain join only delivers what is published after it).
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), joined_rx.recv())
            .await
            .context("viewers did not join")?
            .context("a viewer ended before joining")?;
    }

    let producer_api = api.clone();
    let producer_base = base.clone();
    let producer = tokio::spawn(async move {
        let updates = format!("{producer_base}/api/v1/streams/{ROOM}/updates");
        for i in 0..TOKENS {
            post_until_ok(
                &producer_api,
                &updates,
                &json!({ "updates": [{ "type": "token", "text": format!("t{i} ") }] }),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        let close = format!("{producer_base}/api/v1/streams/{ROOM}/close");
        post_until_ok(
            &producer_api,
            &close,
            &json!({ "status": "complete", "result": {"tokens": TOKENS} }),
        )
        .await
    });

    // Mid-stream: SIGTERM.
    loop {
        let n = seen_rx.recv().await.context("viewers ended early")?;
        if n >= TOKENS / 3 {
            break;
        }
    }
    let status = server.terminate(Duration::from_secs(20)).await?;
    ensure!(status.success(), "exit status {status}");
    ensure!(snapshot.exists(), "no history snapshot written");

    // The restarted server has the history; viewers resume. The snapshot is used once.
    let _server = start().await?;
    ensure!(
        !snapshot.exists(),
        "the snapshot was left in place after loading"
    );
    ensure!(snapshot.with_extension("loaded").exists());
    let close = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .context("the producer did not finish")???;
    ensure!(close["cancelled"] == false, "{close}");

    let expected: Vec<String> = (0..TOKENS).map(|i| format!("t{i} ")).collect();
    for handle in viewers {
        let (publications, resumes) = tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .context("a viewer did not finish")???;
        ensure!(!resumes.is_empty(), "the viewer never reconnected");
        ensure!(
            resumes.iter().all(|r| *r),
            "a resume was not recovered: {resumes:?}"
        );
        let epochs: std::collections::BTreeSet<u64> =
            publications.iter().map(|p| p.epoch).collect();
        ensure!(
            epochs.len() == 1,
            "the epoch changed across the restart: {epochs:?}"
        );
        let offsets: Vec<u64> = publications.iter().map(|p| p.offset).collect();
        let contiguous: Vec<u64> = (1..=offsets.len() as u64).collect();
        ensure!(
            offsets == contiguous,
            "offsets not 1..n exactly once: {offsets:?}"
        );
        ensure!(
            tokens_of(&publications)? == expected,
            "tokens lost or repeated"
        );
    }
    Ok(())
}
