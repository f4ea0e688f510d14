//! The namespace handshake: the `auth` payload, authentication through the hub, and the
//! `connect_error` a refused client receives.

use std::{fmt, net::SocketAddr, sync::Arc};

use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{SocketRef, TryData},
};
use streamgate_core::Credentials;
use streamgate_protocol::{ErrorBody, ErrorCode};

use crate::connection::{self, Shared};

/// Longest accepted token, as for the `auth` and `refresh` commands.
const MAX_TOKEN: usize = 16_384;
/// Longest accepted `deviceId` / `clientVersion`.
const MAX_CLIENT_FIELD: usize = 128;

/// What the client sent as its Socket.IO `auth` payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthPayload {
    pub(crate) token: Option<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) client_version: Option<String>,
}

/// Reads `{ token, deviceId?, clientVersion? }`. No payload at all means no credentials (only
/// an authenticator that admits anonymous clients accepts that).
pub(crate) fn parse_auth(auth: Option<Value>) -> Result<AuthPayload, ErrorBody> {
    let invalid = |m: &str| ErrorBody::new(ErrorCode::ValidationFailed, m);
    let mut fields = match auth {
        None | Some(Value::Null) => return Ok(AuthPayload::default()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(invalid("the auth payload must be an object")),
    };
    let mut text = |name: &str, max: usize| match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        Some(_) => Err(invalid(&format!(
            "auth.{name} must be a string of at most {max} bytes"
        ))),
    };
    Ok(AuthPayload {
        token: text("token", MAX_TOKEN)?,
        device_id: text("deviceId", MAX_CLIENT_FIELD)?,
        client_version: text("clientVersion", MAX_CLIENT_FIELD)?,
    })
}

/// A refused handshake. Its `Display` is the error as JSON, which socketioxide sends as the
/// `connect_error` message: `socket.io-client` hands it over as `err.message`, for
/// `JSON.parse`.
#[derive(Debug)]
pub(crate) struct Rejection(pub(crate) ErrorBody);

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => f.write_str(r#"{"code":"INTERNAL","message":"internal error","recoverable":true,"retry_after_ms":null}"#),
        }
    }
}

/// The connect middleware: authenticates the handshake, then opens the hub session and wires
/// the socket to it. An error refuses the connection with `connect_error`.
pub(crate) async fn admit(
    shared: Arc<Shared>,
    socket: SocketRef,
    io: SocketIo,
    TryData(auth): TryData<Value>,
) -> Result<(), Rejection> {
    let reject = |error: ErrorBody| {
        shared.hub.metrics().error(error.code);
        tracing::debug!(code = %error.code, "socket.io handshake refused");
        Rejection(error)
    };
    let auth = parse_auth(auth.ok()).map_err(reject)?;
    let credentials = Credentials {
        token: auth.token,
        remote_addr: socket
            .req_parts()
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    };
    // The hub counts its own refusals (`SERVER_OVERLOADED` at the connection limit,
    // `RATE_LIMITED` for the per-address quota); the error, code included, is the
    // `connect_error`.
    shared.hub.admit(credentials.remote_addr).map_err(|error| {
        tracing::debug!(code = %error.code, "socket.io connection not admitted");
        Rejection(error)
    })?;
    let principal = match tokio::time::timeout(
        shared.config.connect_timeout,
        shared.hub.authenticate(&credentials),
    )
    .await
    {
        Ok(Ok(principal)) => principal,
        Ok(Err(e)) => return Err(reject(ErrorBody::new(e.code(), e.to_string()))),
        Err(_) => {
            return Err(reject(ErrorBody::new(
                ErrorCode::ServerOverloaded,
                "authentication timed out",
            )));
        }
    };
    shared.watch_shutdown(&io);
    connection::open(
        &shared,
        &socket,
        principal,
        auth.device_id,
        auth.client_version,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn auth_payload_fields_are_checked() {
        assert_eq!(parse_auth(None), Ok(AuthPayload::default()));
        assert_eq!(
            parse_auth(Some(
                json!({"token": "t", "deviceId": "d", "clientVersion": "web/1", "extra": 1})
            )),
            Ok(AuthPayload {
                token: Some("t".into()),
                device_id: Some("d".into()),
                client_version: Some("web/1".into()),
            })
        );
        for bad in [
            json!("token"),
            json!({"token": 5}),
            json!({"token": "t", "deviceId": "d".repeat(200)}),
            json!({"token": "t".repeat(MAX_TOKEN + 1)}),
        ] {
            let error = parse_auth(Some(bad.clone())).err().map(|e| e.code);
            assert_eq!(error, Some(ErrorCode::ValidationFailed), "{bad}");
        }
    }

    #[test]
    fn a_connection_limit_refusal_reaches_connect_error_with_its_code() {
        let hub =
            streamgate_core::Hub::builder(streamgate_core::HubConfig::default().max_connections(1))
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
        let _open = hub.connect(
            streamgate_core::Principal::user("u1"),
            "socketio",
            streamgate_protocol::WireFormat::Json,
        );
        let refused = hub.admit(None).err().map(Rejection);
        let parsed: Value = refused
            .map(|r| serde_json::from_str(&r.to_string()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(parsed["code"], "SERVER_OVERLOADED", "{parsed}");
        assert_eq!(parsed["recoverable"], true);
        assert_eq!(parsed["retry_after_ms"], 1000);
    }

    #[test]
    fn a_rejection_displays_as_the_error_json() {
        let shown = Rejection(ErrorBody::new(ErrorCode::AuthFailed, "invalid credentials"));
        let parsed: Value = serde_json::from_str(&shown.to_string()).unwrap_or_default();
        assert_eq!(
            parsed,
            json!({
                "code": "AUTH_FAILED",
                "message": "invalid credentials",
                "recoverable": false,
                "retry_after_ms": null,
            })
        );
    }
}
