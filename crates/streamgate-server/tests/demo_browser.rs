//! The README's first command, end to end: `streamgate-server` with no configuration serves
//! the demo page, and in headless chromium a demo run plays over each transport, survives a
//! dropped connection with nothing missed and nothing twice, and completes. A screenshot of
//! each finished page is kept under the target directory.

mod common;

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail, ensure};
use common::Server;
use serde_json::Value;
use streamgate_e2e::browser::{Browser, prerequisites};

fn state_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

async fn wait_state(
    browser: &mut Browser,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    for _ in 0..300 {
        let state = browser.eval("demo.state()").await?;
        if done(&state) {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for {what}")
}

/// Where screenshots are kept.
fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

#[tokio::test]
async fn the_demo_page_plays_a_stream_on_every_transport_and_resumes_after_a_drop() -> Result<()> {
    if !prerequisites("demo page", true)? {
        return Ok(());
    }
    let server = Server::start(None, &[]).await?;
    let mut browser = Browser::open_page(&server.url(""), "/").await?;
    let title = browser.eval("document.title").await?;
    ensure!(
        title.as_str().is_some_and(|t| t.contains("streamgate")),
        "{title}"
    );

    let words = streamgate_server::demo::ANSWER.split_inclusive(' ').count() as u64;
    for transport in ["websocket", "sse", "socketio"] {
        let joined = browser.eval(&format!("demo.start('{transport}')")).await?;
        ensure!(joined["transport"] == transport, "{transport}: {joined}");

        // Drop the connection in the middle of the run.
        wait_state(&mut browser, "the first tokens", |s| {
            state_of(s, "tokens") >= 20
        })
        .await?;
        let resumed = browser.eval("demo.drop()").await?;
        ensure!(
            resumed["recovered"] == true,
            "{transport}: resume {resumed}"
        );

        let state = wait_state(&mut browser, "the end of the run", |s| {
            s["complete"] == true
        })
        .await?;
        let offsets: Vec<u64> = state["offsets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let expected: Vec<u64> = (1..=offsets.len() as u64).collect();
        ensure!(offsets == expected, "{transport}: offsets {offsets:?}");
        ensure!(state_of(&state, "duplicates") == 0, "{transport}: {state}");
        ensure!(state_of(&state, "resumes") >= 1, "{transport}: {state}");
        ensure!(state["lastRecovered"] == true, "{transport}: {state}");
        ensure!(state_of(&state, "tokens") == words, "{transport}: {state}");
        ensure!(
            state["text"].as_str() == Some(streamgate_server::demo::ANSWER),
            "{transport}: text {}",
            state["text"]
        );
        ensure!(
            state["progress"].as_f64() == Some(1.0),
            "{transport}: {state}"
        );
        ensure!(state["outcome"] == "complete", "{transport}: {state}");

        let shot = artifact(&format!("demo-{transport}.png"));
        browser.screenshot(&shot).await?;
        let png = std::fs::read(&shot)?;
        ensure!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{transport}: bad screenshot"
        );
        eprintln!("screenshot: {}", shot.display());
    }
    browser.close().await?;
    Ok(())
}
