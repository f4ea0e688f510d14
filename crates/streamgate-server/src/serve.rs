//! Running the server: listen, announce, and shut down gracefully on SIGTERM/SIGINT.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket};

use crate::{
    app::{self, AppState, DevSecrets},
    config::ServerConfig,
};

/// Prints where everything is, and the development secrets, once.
fn announce(addr: SocketAddr, config: &ServerConfig, secrets: &DevSecrets) {
    let http = format!("http://{addr}");
    let ws = format!("ws://{addr}");
    println!(
        "streamgate-server {} listening on {http}",
        env!("CARGO_PKG_VERSION")
    );
    if config.demo_enabled() {
        println!("  demo page    {http}/");
    }
    if config.websocket.enabled {
        println!("  WebSocket    {ws}{}", config.websocket.path);
    }
    if config.sse.enabled {
        println!("  SSE          {http}{}", config.sse.path);
    }
    if config.socketio.enabled {
        println!(
            "  Socket.IO    {http}{} (namespace {})",
            config.socketio.path, config.socketio.namespace
        );
    }
    if config.api.enabled {
        println!("  HTTP API     {http}/api/v1 (OpenAPI: {http}/api/v1/openapi.json)");
    }
    println!("  operations   {http}/healthz {http}/readyz {http}/metrics");
    if secrets.jwt_secret.is_some() || secrets.api_key.is_some() {
        println!();
        println!("!!! DEVELOPMENT CREDENTIALS: generated because the configuration has none. !!!");
        println!(
            "!!! Never use them in production: configure [auth] and [api] (docs/server.md). !!!"
        );
        if let Some(secret) = &secrets.jwt_secret {
            println!("  client JWT secret (HS256): {secret}");
            println!(
                "    mint tokens with: STREAMGATE_DEV_SECRET={secret} streamgate-server token --user alice --tenant acme"
            );
        }
        if let Some(key) = &secrets.api_key {
            println!("  API key: {key}");
            println!("    try: curl -H 'Authorization: Bearer {key}' {http}/api/v1/stats");
        }
        tracing::warn!("development credentials in use: configure [auth] and [api] for production");
    }
}

/// Waits for SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The graceful shutdown: not ready any more, let session queues drain (up to half the
/// grace period), then tell every client to reconnect (`SHUTTING_DOWN`, recoverable: they
/// resume from their last offsets) and refuse further publications.
async fn begin_shutdown(state: &AppState, grace: Duration) {
    state.ready.store(false, Ordering::Relaxed);
    let hub = state.gateway.hub();
    tracing::info!(
        sessions = hub.stats().sessions,
        "shutting down: draining queues"
    );
    let deadline = Instant::now() + grace / 2;
    while hub.stats().queued > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.gateway.shutdown();
    state.streams.lock().clear();
}

/// Writes the history snapshot, when one is configured.
fn save_history(state: &AppState) -> anyhow::Result<()> {
    let Some(path) = &state.config.history.snapshot else {
        return Ok(());
    };
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp)
        .with_context(|| format!("history.snapshot: cannot create {}", tmp.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = state
        .history
        .save(&mut writer)
        .with_context(|| format!("history.snapshot: cannot write {}", tmp.display()))?;
    let file = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("history.snapshot: cannot flush: {}", e.error()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("history.snapshot: cannot replace {}", path.display()))?;
    tracing::info!(publications = written, path = %path.display(), "history saved");
    Ok(())
}

/// File descriptors kept out of the connection budget: the listener, the runtime, the history
/// snapshot, logs, and the sockets that are accepted only to be refused with
/// `SERVER_OVERLOADED` once the limit is reached.
pub const DESCRIPTOR_RESERVE: usize = 512;

/// How many connections the process's descriptor limit allows, after raising its soft
/// `RLIMIT_NOFILE` to the hard limit: the limit less [`DESCRIPTOR_RESERVE`]. `None` where the
/// limit cannot be read.
///
/// ```
/// use streamgate_server::serve::{DESCRIPTOR_RESERVE, descriptor_budget};
///
/// let budget = descriptor_budget().expect("RLIMIT_NOFILE is readable on Linux");
/// // The soft limit is now the hard one, and the reserve is kept out of the budget.
/// let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
/// assert_eq!(soft, hard);
/// assert_eq!(budget as u64, soft.saturating_sub(DESCRIPTOR_RESERVE as u64).max(1));
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use]
pub fn descriptor_budget() -> Option<usize> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Some(limit.saturating_sub(DESCRIPTOR_RESERVE).max(1))
}

/// Lowers `server.max_connections` to what the descriptor limit allows, so that the server
/// refuses connections past it cleanly (`SERVER_OVERLOADED`) instead of failing to accept
/// them, and says so.
fn fit_to_descriptors(mut config: ServerConfig) -> ServerConfig {
    if let Some(budget) = descriptor_budget()
        && config.server.max_connections > budget
    {
        tracing::warn!(
            configured = config.server.max_connections,
            allowed = budget,
            "server.max_connections is more than the open-file limit allows; lowered"
        );
        config.server.max_connections = budget;
    }
    config
}

/// Pending connections the listener queues (the kernel caps it at `net.core.somaxconn`): a
/// storm of clients connecting at once waits in the queue instead of retrying after a lost SYN.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn serve(config: ServerConfig, secrets: DevSecrets) -> anyhow::Result<()> {
    let config = fit_to_descriptors(config);
    let app::App { state, router } = app::build(&config, &secrets)?;
    let listen_on = config.listen();
    let listener = listen(listen_on)
        .with_context(|| format!("server.listen: cannot listen on {listen_on}"))?;
    let addr = listener.local_addr()?;
    announce(addr, &config, &secrets);
    tracing::info!(%addr, "listening");

    let grace = config.server.shutdown_grace.0;
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let signal_state = Arc::clone(&state);
    tokio::spawn(async move {
        signal().await;
        begin_shutdown(&signal_state, grace).await;
        let _ = stopped_tx.send(());
    });
    // Without TCP_NODELAY, a frame written while an earlier one is unacknowledged waits for
    // the peer's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = stopped_rx.await;
    });
    // The server future ends once every connection closed; past the grace period the
    // remaining ones are cut.
    let mut server = std::pin::pin!(server.into_future());
    let shutting_down = Arc::clone(&state);
    tokio::select! {
        result = &mut server => result.context("serve")?,
        () = async {
            shutting_down.gateway.hub().shutting_down().await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over: closing the remaining connections"),
    }
    save_history(&state)?;
    tracing::info!("stopped");
    Ok(())
}
