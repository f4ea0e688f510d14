//! `POST {commands_path}`: one client frame for a live SSE session. The answer to the command
//! arrives on the session's event stream; the HTTP response only says whether it was accepted.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use streamgate_core::{Credentials, SessionId};
use streamgate_protocol::{Command, DecodeError, ErrorCode, WireFormat};

use crate::{
    request::{self, Refusal},
    routes::Shared,
};

/// The header naming the session a command is for (the `session` of its `connected` event).
pub(crate) const SESSION_HEADER: &str = "x-streamgate-session";

/// Accepts one command, or refuses the request.
pub(crate) async fn accept(shared: &Arc<Shared>, request: Request) -> Result<Response, Refusal> {
    let config = &shared.config;
    let (parts, body) = request.into_parts();
    let params = request::params(parts.uri.query())?;
    let credentials = Credentials {
        token: request::token(&parts.headers, params.token, &config.cookie_name),
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    };
    let principal = request::authenticate(&shared.hub, &credentials).await?;
    let id = session_id(&parts.headers)?;
    let bytes = read_body(&parts.headers, body, config.max_frame_size).await?;
    let frame = WireFormat::Json
        .decode_client(&bytes, config.max_frame_size)
        .map_err(|e| decode_refusal(&e))?;
    if matches!(frame.cmd, Command::Auth(_)) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ProtocolError,
            "`auth` is not a command here: send the token with each request",
        ));
    }

    let live = shared.registry.get(id).ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotJoined,
            "no live SSE session with this id; use the session of the latest `connected` event",
        )
    })?;
    // Session ids are not secrets (they count up), so the caller must be the session's owner;
    // an anonymous session has no owner to check against.
    let owner = live.session.principal();
    let refuse =
        |message| Refusal::new(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, message);
    if principal.user.is_none() {
        return Err(refuse("commands need an authenticated user"));
    }
    if principal.user != owner.user || principal.tenant != owner.tenant {
        return Err(refuse("this session belongs to someone else"));
    }

    let _turn = live.turn.lock().await;
    if let Command::Join(join) = &frame.cmd
        && !live.claim(&join.room, config.max_rooms)
    {
        return Err(Refusal::invalid(format!(
            "at most {} rooms per connection",
            config.max_rooms
        )));
    }
    let left = match &frame.cmd {
        Command::Leave(leave) => Some(leave.room.clone()),
        _ => None,
    };
    live.session.handle(frame).await;
    if let Some(room) = left {
        live.release(&room);
    }
    Ok((
        StatusCode::ACCEPTED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        r#"{"accepted":true}"#,
    )
        .into_response())
}

/// Answers a CORS preflight for the commands endpoint: an allowed origin may `POST` with the
/// headers a command needs (the session header forces a preflight, which is what keeps other
/// sites from sending commands with the user's cookie).
pub(crate) fn preflight(shared: &Shared, headers: &HeaderMap) -> Result<Response, Refusal> {
    let origin = request::origin(&shared.config, headers)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    if origin.is_some() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-streamgate-session"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    Ok(request::with_cors(&shared.config, response, origin))
}

fn session_id(headers: &HeaderMap) -> Result<SessionId, Refusal> {
    let value = headers
        .get(SESSION_HEADER)
        .ok_or_else(|| Refusal::invalid("missing X-Streamgate-Session header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Refusal::invalid("X-Streamgate-Session must be a session id such as s42"))
}

fn too_large(max: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::FrameTooLarge,
        format!("the command is larger than {max} bytes"),
    )
}

/// Reads at most `max` bytes; a declared or actual larger body is `413`.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large(max));
    }
    let mut bytes = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ProtocolError,
                "could not read the request body",
            )
        })?;
        if bytes.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn decode_refusal(error: &DecodeError) -> Refusal {
    let status = match error {
        DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    Refusal::new(status, error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_header_is_a_session_id() {
        let mut headers = HeaderMap::new();
        assert!(session_id(&headers).is_err());
        headers.insert(SESSION_HEADER, HeaderValue::from_static("s42"));
        assert_eq!(session_id(&headers).ok().map(SessionId::get), Some(42));
        for bad in ["42", "s", "s-1", "x42", ""] {
            headers.insert(SESSION_HEADER, HeaderValue::from_static(bad));
            assert!(session_id(&headers).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn bodies_are_bounded() {
        let declared = |n: usize| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            h
        };
        let ok = read_body(&HeaderMap::new(), Body::from("12345"), 5).await;
        assert_eq!(ok.ok().as_deref(), Some(&b"12345"[..]));
        let over = read_body(&HeaderMap::new(), Body::from("123456"), 5).await;
        assert!(over.is_err_and(|r| r.code() == ErrorCode::FrameTooLarge));
        let lying = read_body(&declared(6), Body::from("1"), 5).await;
        assert!(lying.is_err_and(|r| r.code() == ErrorCode::FrameTooLarge));
    }
}
