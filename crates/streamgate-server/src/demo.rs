//! The demo page at `/` (embedded in the binary) and the synthetic LLM runs it watches.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use streamgate::{ErrorCode, Gateway, PublishError, RoomId};

use crate::{app::AppState, error::ApiError, token::TokenSpec};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const DEMO_JS: &str = include_str!("../assets/demo.js");
const DEMO_CSS: &str = include_str!("../assets/demo.css");

/// The synthetic answer, streamed word by word.
pub const ANSWER: &str = "streamgate carries live updates from your backend to browsers and apps \
    over WebSocket, Server-Sent Events and Socket.IO. Every logged publication gets an offset in \
    its room, so a client that drops and comes back asks for everything after the last offset it \
    saw and gets exactly what it missed: nothing lost, nothing twice. Press Drop connection while \
    this answer is being written and watch the stream pick up where it left off. Producers in any \
    language publish over the HTTP API, tokens are encoded once and shared by every viewer, and \
    slow clients are cut off instead of slowing down the room. Presence, typing, acknowledgements, \
    offline queues and rate limits come with it, and one binary with an in-memory default is all \
    it takes to start.";

/// Demo runs allowed at once on one server.
const MAX_RUNS: usize = 32;
/// Room kind and tenant of demo runs.
const DEMO_KIND: &str = "execution";
const DEMO_TENANT: &str = "demo";

struct Demo {
    app: Arc<AppState>,
    running: AtomicUsize,
    delay: Duration,
}

fn paths(app: &AppState) -> Value {
    let c = &app.config;
    let on = |enabled: bool, path: &str| enabled.then(|| path.to_owned());
    json!({
        "websocket": on(c.websocket.enabled, &c.websocket.path),
        "sse": on(c.sse.enabled, &c.sse.path),
        "sse_commands": on(c.sse.enabled, &c.sse.commands_path),
        "socketio": on(c.socketio.enabled, &c.socketio.path),
        "socketio_namespace": on(c.socketio.enabled, &c.socketio.namespace),
    })
}

async fn config(State(demo): State<Arc<Demo>>) -> Json<Value> {
    Json(json!({ "paths": paths(&demo.app) }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    room: Option<String>,
}

fn demo_room(requested: Option<&str>) -> Result<RoomId, ApiError> {
    let room = match requested {
        Some(raw) => raw
            .parse::<RoomId>()
            .map_err(|e| ApiError::invalid(format!("room: {e}")))?,
        None => {
            let id: u32 = rand::rng().random();
            RoomId::new(DEMO_KIND, &format!("{DEMO_TENANT}.run-{id:08x}"))
                .map_err(|e| ApiError::invalid(e.to_string()))?
        }
    };
    let prefix = format!("{DEMO_TENANT}.");
    if room.kind() != DEMO_KIND || !room.name().starts_with(&prefix) {
        return Err(ApiError::invalid(format!(
            "demo runs use rooms `{DEMO_KIND}:{DEMO_TENANT}.*`"
        )));
    }
    Ok(room)
}

async fn run(
    State(demo): State<Arc<Demo>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: RunRequest = crate::api::optional_json(body)?;
    let room = demo_room(request.room.as_deref())?;
    if !demo.app.knows_kind(DEMO_KIND) {
        return Err(ApiError::invalid(format!(
            "the demo needs the room kind `{DEMO_KIND}`: configure [rooms.{DEMO_KIND}]"
        )));
    }
    let Some(minter) = &demo.app.minter else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the demo needs an HMAC JWT secret to mint viewer tokens",
        ));
    };
    if demo.running.fetch_add(1, Ordering::AcqRel) >= MAX_RUNS {
        demo.running.fetch_sub(1, Ordering::AcqRel);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many demo runs at once; try again in a few seconds",
        );
        e.body.retry_after_ms = Some(5_000);
        return Err(e);
    }
    let viewer: u32 = rand::rng().random();
    let spec = TokenSpec::user(format!("viewer-{viewer:08x}"))
        .tenant(DEMO_TENANT)
        .rooms([room.to_string()]);
    let token = minter.mint(&spec, Duration::from_secs(3600)).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "cannot mint a token",
        )
    })?;
    let words = ANSWER.split_inclusive(' ').count();
    let task = Arc::clone(&demo);
    let run_room = room.clone();
    tokio::spawn(async move {
        // Give the page a moment to connect and join before the first token.
        tokio::time::sleep(Duration::from_millis(700)).await;
        if let Err(e) = synthetic_run(&task.app.gateway, run_room, task.delay).await {
            tracing::debug!(error = %e, "demo run ended early");
        }
        task.running.fetch_sub(1, Ordering::AcqRel);
    });
    Ok(Json(json!({
        "room": room.to_string(),
        "token": token,
        "paths": paths(&demo.app),
        "tokens": words,
    })))
}

/// Streams a synthetic LLM run into `room`: `node.start`, the words of [`ANSWER`] as tokens
/// (each after `delay`) with progress every four, `node.complete`, then `complete`. Stops
/// early (as `cancelled`) when a viewer presses Stop.
pub async fn synthetic_run(
    gateway: &Gateway,
    room: RoomId,
    delay: Duration,
) -> Result<(), PublishError> {
    let stream = gateway.stream(room);
    stream.event("node.start", json!({ "node": "llm", "model": "demo" }))?;
    let words: Vec<&str> = ANSWER.split_inclusive(' ').collect();
    for (i, word) in words.iter().enumerate() {
        tokio::select! {
            () = stream.cancelled() => {
                stream.end_cancelled(json!({ "tokens": i }))?;
                return Ok(());
            }
            () = tokio::time::sleep(delay) => {}
        }
        stream.token(*word)?;
        if i % 4 == 3 {
            stream.progress(
                (i + 1) as f32 / words.len() as f32,
                Some("generation"),
                None,
            )?;
        }
    }
    stream.progress(1.0, Some("generation"), Some("done"))?;
    stream.event(
        "node.complete",
        json!({ "node": "llm", "tokens": words.len() }),
    )?;
    stream.complete(json!({ "text": ANSWER }))?;
    Ok(())
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/`, `/demo.js`, `/demo.css`, `/demo/config`, `POST /demo/run`.
pub fn router(app: Arc<AppState>) -> Router {
    let demo = Arc::new(Demo {
        app,
        running: AtomicUsize::new(0),
        delay: Duration::from_millis(40),
    });
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/demo.js",
            get(|| async { asset("text/javascript; charset=utf-8", DEMO_JS) }),
        )
        .route(
            "/demo.css",
            get(|| async { asset("text/css; charset=utf-8", DEMO_CSS) }),
        )
        .route("/demo/config", get(config))
        .route("/demo/run", post(run))
        .with_state(demo)
}
