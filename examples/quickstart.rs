//! A gateway on 127.0.0.1:8080 that streams a demo LLM run into `execution:demo` every few
//! seconds.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Then connect any WebSocket client with the development token and join the room, e.g. with
//! websocat:
//!
//! ```text
//! websocat -H 'Authorization: Bearer dev-token' ws://127.0.0.1:8080/ws
//! {"type":"join","room":"execution:demo"}
//! ```
//!
//! Set `STREAMGATE_ADDR` to listen elsewhere.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use streamgate::{Gateway, Principal, RoomPolicy, StaticTokens};

const ANSWER: &str = "Streams survive reconnects: every update has an offset in its room, and a client \
    that comes back asks for everything after the last offset it saw, so nothing is lost and \
    nothing arrives twice.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info,streamgate=debug")
        .init();
    let addr: SocketAddr = std::env::var("STREAMGATE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("STREAMGATE_ADDR")?;

    let gateway = Gateway::builder()
        // Development only: a fixed token. Real deployments configure JWT or API keys.
        .authenticator(StaticTokens::new().with_token("dev-token", Principal::user("dev")))
        .room_kind(
            "execution",
            RoomPolicy::default().history(10_000, Duration::from_secs(3600)),
        )
        .build()?;

    let app = axum::Router::new().merge(gateway.router());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    println!("streamgate listening on ws://{addr}/ws (token: dev-token)");
    println!(
        r#"join with {{"type":"join","room":"execution:demo"}} to watch a demo run every 5 s"#
    );

    let producer = gateway.clone();
    tokio::spawn(async move {
        loop {
            let room = "execution:demo"
                .parse()
                .unwrap_or_else(|e| panic!("static room id: {e}"));
            if let Err(e) =
                streamgate_examples::demo_run(&producer, room, ANSWER, Duration::from_millis(80))
                    .await
            {
                eprintln!("demo run failed: {e}");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    gateway.shutdown();
    Ok(())
}
