//! The HTTP side: socketioxide's layer on the Engine.IO path, behind the origin allow-list.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::any,
};
use http::{StatusCode, header};
use serde_json::Value;
use socketioxide::{
    ParserConfig, SocketIo,
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
};
use streamgate_core::Hub;
use streamgate_protocol::{ErrorBody, ErrorCode};

use crate::{
    SocketIoConfig,
    connection::{self, Shared},
    handshake,
};

pub(crate) fn build(hub: Hub, config: &Arc<SocketIoConfig>) -> Router {
    let path = config.path.trim_end_matches('/').to_owned();
    let (layer, io) = SocketIo::builder()
        .req_path(path.clone())
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .connect_timeout(config.connect_timeout)
        .max_payload(u64::try_from(config.max_payload).unwrap_or(u64::MAX))
        .ws_max_message_size(config.max_payload)
        .ws_max_frame_size(config.max_payload)
        .max_buffer_size(config.buffer_size)
        .with_parser(ParserConfig::common().max_incoming_binary_buf_size(config.max_payload))
        .build_layer();

    let shared = Arc::new(Shared::new(hub.clone(), Arc::clone(config)));
    let admit = {
        let shared = Arc::clone(&shared);
        move |socket: SocketRef, io: SocketIo, auth: TryData<Value>| {
            handshake::admit(Arc::clone(&shared), socket, io, auth)
        }
    };
    let joined = move |socket: SocketRef| {
        connection::start(&shared, &socket);
        std::future::ready(())
    };
    io.ns(config.namespace.clone(), joined.with(admit));

    // Engine.IO clients ask for `{path}/?EIO=4&transport=…`; the layer answers every request
    // under the path, so the routes' own handler only names the path for the router.
    let router = Router::new()
        .route(&path, any(not_found))
        .route(&format!("{path}/"), any(not_found))
        .route_layer(layer);
    match &config.allowed_origins {
        Some(origins) => router.route_layer(from_fn_with_state(
            (Arc::new(origins.clone()), hub),
            check_origin,
        )),
        None => router,
    }
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// Refuses browser requests from origins outside the allow-list; requests without an `Origin`
/// header (non-browser clients) pass.
async fn check_origin(
    State((allowed, hub)): State<(Arc<Vec<String>>, Hub)>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes())
    {
        hub.metrics().error(ErrorCode::PermissionDenied);
        let body = serde_json::json!({
            "error": ErrorBody::new(ErrorCode::PermissionDenied, "origin not allowed")
        });
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    next.run(request).await
}
