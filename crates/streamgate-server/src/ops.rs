//! Operations endpoints: `/healthz` (the process answers), `/readyz` (it should get traffic:
//! not shutting down, backplane up) and `/metrics` (Prometheus text format).

use std::{fmt::Write as _, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;
use streamgate::ErrorCode;

use crate::app::AppState;

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let backplane = state.gateway.hub().backplane();
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "shutting_down": state.gateway.hub().is_shutting_down(),
        "backplane": { "name": backplane.name(), "ready": backplane.is_ready() },
    });
    (status, Json(body))
}

/// Renders the gateway's counters in the Prometheus text exposition format (version 0.0.4).
///
/// ```
/// let hub = streamgate::Hub::builder(streamgate::HubConfig::default()).build()?;
/// let text = streamgate_server::ops::prometheus(&hub, 12);
/// assert!(text.contains("# TYPE streamgate_connections gauge"));
/// assert!(text.contains("streamgate_uptime_seconds 12"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn prometheus(hub: &streamgate::Hub, uptime_secs: u64) -> String {
    let m = hub.metrics().snapshot();
    let s = hub.stats();
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "streamgate_connections",
        "gauge",
        "Open client sessions.",
        m.connections.to_string(),
    );
    metric(
        "streamgate_active_streams",
        "gauge",
        "Streams with a live producer.",
        m.active_streams.to_string(),
    );
    metric(
        "streamgate_rooms",
        "gauge",
        "Rooms known to the hub.",
        s.rooms.to_string(),
    );
    metric(
        "streamgate_logged_rooms",
        "gauge",
        "Rooms with history.",
        s.logged_rooms.to_string(),
    );
    metric(
        "streamgate_queued_frames",
        "gauge",
        "Frames waiting in session queues.",
        s.queued.to_string(),
    );
    metric(
        "streamgate_offline_users",
        "gauge",
        "Users with an offline queue.",
        s.offline_users.to_string(),
    );
    metric(
        "streamgate_offline_queued",
        "gauge",
        "Publications waiting in offline queues.",
        s.offline_queued.to_string(),
    );
    metric(
        "streamgate_messages_in_total",
        "counter",
        "Client frames received.",
        m.messages_in.to_string(),
    );
    metric(
        "streamgate_messages_out_total",
        "counter",
        "Frames queued to sessions.",
        m.messages_out.to_string(),
    );
    metric(
        "streamgate_messages_dropped_total",
        "counter",
        "Volatile frames dropped for full queues.",
        m.dropped.to_string(),
    );
    metric(
        "streamgate_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        uptime_secs.to_string(),
    );

    let _ = writeln!(
        out,
        "# HELP streamgate_errors_total Errors sent to clients, by code.\n# TYPE streamgate_errors_total counter"
    );
    for code in ErrorCode::ALL {
        let _ = writeln!(
            out,
            "streamgate_errors_total{{code=\"{code}\"}} {}",
            m.errors_for(*code)
        );
    }

    let name = "streamgate_delivery_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from publication to the frame's write.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (le, count) in &m.latency.buckets {
        cumulative += count;
        if *le == u64::MAX {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        } else {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *le as f64 / 1e6
            );
        }
    }
    let _ = writeln!(out, "{name}_sum {}", m.latency.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", m.latency.count);
    out
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = prometheus(state.gateway.hub(), state.started.elapsed().as_secs());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}
