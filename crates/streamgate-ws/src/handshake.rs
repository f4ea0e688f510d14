//! The HTTP side: validate the upgrade request, negotiate the subprotocol, upgrade with hyper.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use streamgate_core::{Credentials, Hub, decode_query_component};
use streamgate_protocol::{ErrorBody, ErrorCode, WireFormat};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig},
};

use crate::{WsConfig, connection};

#[derive(Clone)]
struct WsState {
    hub: Hub,
    config: Arc<WsConfig>,
}

pub(crate) fn router(hub: Hub, config: Arc<WsConfig>) -> Router {
    Router::new()
        .route(&config.path.clone(), get(upgrade))
        .with_state(WsState { hub, config })
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    refuse_with(status, &ErrorBody::new(code, message))
}

/// Bytes of the buffer each connection reads into. tungstenite's default (128 KiB) is
/// allocated and zeroed per connection, which is 128 KiB of RSS for every idle client; clients
/// send small frames (joins, commands), and a larger one is simply read in several calls.
const READ_BUFFER_SIZE: usize = 1024;

/// A JSON refusal; a `retry_after_ms` also becomes a `Retry-After` header (whole seconds).
fn refuse_with(status: StatusCode, error: &ErrorBody) -> Response {
    let retry_after = error.retry_after_ms.map(|ms| ms.div_ceil(1000));
    let body = serde_json::json!({ "error": error }).to_string();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The HTTP status of a connection the hub did not admit: `429` for the per-address quota
/// (`RATE_LIMITED`), `503` when the server is at its connection limit (`SERVER_OVERLOADED`)
/// or refuses for any other reason.
fn admission_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    header_str(headers, name)
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Picks the first offered subprotocol we speak. No offer means JSON; an offer of only
/// unknown protocols is refused, since the client would reject a response without one.
fn negotiate(headers: &HeaderMap) -> Option<(WireFormat, bool)> {
    let Some(offered) = header_str(headers, header::SEC_WEBSOCKET_PROTOCOL) else {
        return Some((WireFormat::Json, false));
    };
    offered
        .split(',')
        .find_map(WireFormat::from_subprotocol)
        .map(|f| (f, true))
}

fn token_from(request: &Request) -> Option<String> {
    if let Some(auth) = header_str(request.headers(), header::AUTHORIZATION) {
        let (scheme, token) = auth.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| decode_query_component(value))
    })
}

async fn upgrade(State(state): State<WsState>, mut request: Request) -> Response {
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::ProtocolError,
            "a WebSocket upgrade is required",
        );
    }
    if header_str(headers, header::SEC_WEBSOCKET_VERSION) != Some("13") {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::ProtocolError,
            "Sec-WebSocket-Version must be 13",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::ProtocolError,
            "missing Sec-WebSocket-Key",
        );
    };
    if let (Some(allowed), Some(origin)) = (
        &state.config.allowed_origins,
        header_str(headers, header::ORIGIN),
    ) && !allowed.iter().any(|a| a == origin)
    {
        state.hub.metrics().error(ErrorCode::PermissionDenied);
        return refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "origin not allowed",
        );
    }
    let Some((format, echo_protocol)) = negotiate(headers) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::ProtocolError,
            "unsupported subprotocol: use streamgate.v1.json or streamgate.v1.bincode",
        );
    };
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Err(error) = state.hub.admit(remote_addr) {
        return refuse_with(admission_status(error.code), &error);
    }
    let accept = derive_accept_key(key.as_bytes());
    let credentials = Credentials {
        token: token_from(&request),
        remote_addr,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = Arc::clone(&state.config);
    let hub = state.hub;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            .max_message_size(Some(config.max_frame_size))
            .max_frame_size(Some(config.max_frame_size));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        connection::run(socket, hub, config, credentials, format).await;
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if echo_protocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(format.subprotocol()),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[tokio::test]
    async fn refused_admissions_map_their_code_to_the_status_with_retry_after() {
        let cases = [
            (
                ErrorBody::new(ErrorCode::RateLimited, "too many").with_retry_after_ms(1500),
                StatusCode::TOO_MANY_REQUESTS,
                "2",
            ),
            (
                ErrorBody::new(ErrorCode::ServerOverloaded, "at the limit")
                    .with_retry_after_ms(1000),
                StatusCode::SERVICE_UNAVAILABLE,
                "1",
            ),
        ];
        for (error, status, retry_after) in cases {
            let code = error.code;
            let response = refuse_with(admission_status(code), &error);
            assert_eq!(response.status(), status, "{code}");
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .map(HeaderValue::as_bytes),
                Some(retry_after.as_bytes()),
                "{code}"
            );
            let body = body_json(response).await;
            assert_eq!(body["error"]["code"], code.as_str());
            assert_eq!(body["error"]["recoverable"], true);
        }
    }
}
