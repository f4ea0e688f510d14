//! The transport's routes and the state they share.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::HeaderMap;
use streamgate_core::Hub;

use crate::{
    SseConfig, commands, events,
    registry::Registry,
    request::{self, Refusal},
};

/// What the handlers of one router share.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<SseConfig>,
    /// Session ids are per hub, so each router (bound to one hub) has its own registry.
    pub(crate) registry: Arc<Registry>,
}

pub(crate) fn router(hub: Hub, config: &Arc<SseConfig>) -> Router {
    let shared = Arc::new(Shared {
        hub,
        config: Arc::clone(config),
        registry: Arc::default(),
    });
    Router::new()
        .route(&config.path, get(open_stream))
        .route(
            &config.commands_path,
            post(accept_command).options(preflight),
        )
        .with_state(shared)
}

async fn open_stream(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let origin = match request::origin(&shared.config, request.headers()) {
        Ok(origin) => origin,
        Err(refusal) => return shared.refuse(refusal),
    };
    let response = match events::open(&shared, request).await {
        Ok(response) => response,
        Err(refusal) => shared.refuse(refusal),
    };
    request::with_cors(&shared.config, response, origin)
}

async fn accept_command(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let origin = match request::origin(&shared.config, request.headers()) {
        Ok(origin) => origin,
        Err(refusal) => return shared.refuse(refusal),
    };
    let response = match commands::accept(&shared, request).await {
        Ok(response) => response,
        Err(refusal) => shared.refuse(refusal),
    };
    request::with_cors(&shared.config, response, origin)
}

async fn preflight(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    commands::preflight(&shared, &headers).unwrap_or_else(|refusal| shared.refuse(refusal))
}

impl Shared {
    /// Counts the refusal in the hub's error metrics (unless the hub counted it already) and
    /// renders it.
    fn refuse(&self, refusal: Refusal) -> Response {
        if refusal.uncounted() {
            self.hub.metrics().error(refusal.code());
        }
        refusal.into_response()
    }
}
