//! Benchmark peer: a bare [socketioxide](https://docs.rs/socketioxide) server.
//!
//! One of the systems `cargo xtask bench` compares streamgate against. Its behaviour is the
//! contract in `bench/peers/README.md`, identical to the Node peer's: namespace `/streaming`,
//! HS256 JWT in the handshake `auth`, the listed rooms joined, and one `publish` event fanned
//! out to a room by socketioxide's own broadcast, sender included.
//!
//! ```text
//! bench-peer-socketioxide --listen 127.0.0.1:PORT --secret S
//! ```

use std::{fmt, io::Write as _, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{SocketRef, TryData},
    handler::ConnectHandler as _,
};
use tokio::net::TcpListener;

/// The most rooms one handshake may ask for.
const MAX_ROOMS: usize = 64;
/// The longest room name, in UTF-8 bytes.
const MAX_ROOM_BYTES: usize = 128;

/// A bare socketioxide server for the streamgate benchmarks.
#[derive(Debug, Parser)]
#[command(name = "bench-peer-socketioxide", about)]
struct Cli {
    /// The address to listen on, `HOST:PORT`.
    #[arg(long, env = "BENCH_LISTEN")]
    listen: String,
    /// The HS256 secret the handshake tokens are signed with.
    #[arg(long, env = "BENCH_SECRET", hide_env_values = true)]
    secret: String,
}

/// Why a namespace connection is refused; the text is the client's `connect_error` message.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    AuthFailed,
    ValidationFailed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AuthFailed => "AUTH_FAILED",
            Self::ValidationFailed => "VALIDATION_FAILED",
        })
    }
}

/// Checks handshake tokens: HS256 only, `sub` and `exp` required, `exp` and `nbf` checked
/// without leeway (as Node's `jsonwebtoken.verify` does by default).
struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Verifier {
    fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        // Node's verify ignores `aud` unless told which audience to expect.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    fn verify(&self, token: &str) -> bool {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .is_ok_and(|data| !data.claims.sub.is_empty())
    }
}

/// The rooms a handshake asked for, carried from the connect middleware to the connect handler.
#[derive(Clone)]
struct Rooms(Vec<String>);

/// Validates the handshake `auth` payload: `{ "token": JWT, "rooms": [string, …] }`.
fn admit(verifier: &Verifier, auth: Option<&Value>) -> Result<Rooms, Refusal> {
    let token = auth
        .and_then(|auth| auth.get("token"))
        .and_then(Value::as_str);
    if !token.is_some_and(|token| verifier.verify(token)) {
        return Err(Refusal::AuthFailed);
    }
    let rooms = auth
        .and_then(|auth| auth.get("rooms"))
        .and_then(Value::as_array)
        .filter(|rooms| rooms.len() <= MAX_ROOMS)
        .ok_or(Refusal::ValidationFailed)?;
    rooms
        .iter()
        .map(|room| match room.as_str() {
            Some(room) if room.len() <= MAX_ROOM_BYTES => Ok(room.to_owned()),
            _ => Err(Refusal::ValidationFailed),
        })
        .collect::<Result<_, _>>()
        .map(Rooms)
}

/// Reads the one client event's payload, `{ "room": string, "data": any }`.
///
/// Parsed from a `Value` rather than derived: a derived struct would also accept the sequence
/// `["room", data]`, which the Node peer ignores.
fn publication(payload: Value) -> Option<(String, Value)> {
    let Value::Object(mut payload) = payload else {
        return None;
    };
    let data = payload.remove("data")?;
    match payload.remove("room")? {
        Value::String(room) => Some((room, data)),
        _ => None,
    }
}

async fn on_connect(socket: SocketRef) {
    // Joined here rather than in the middleware: a socket refused later never enters a room.
    if let Some(Rooms(rooms)) = socket.extensions.remove::<Rooms>() {
        socket.join(rooms);
    }
    socket.on(
        "publish",
        async |socket: SocketRef, TryData(payload): TryData<Value>| {
            let Some((room, data)) = payload.ok().and_then(publication) else {
                return;
            };
            // `within`, unlike `to`, includes the sender when it is in the room. A full socket
            // buffer drops the message for that socket only, as socketioxide does by default.
            let _ = socket.within(room).emit("message", &data).await;
        },
    );
}

async fn shutdown_signal(io: SocketIo) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    // Disconnects every client (ending long-polls and WebSockets), so the server can drain.
    io.close().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // 19 000+ idle connections need more descriptors than the usual soft limit.
    rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;

    let verifier = Arc::new(Verifier::new(&cli.secret));
    // The defaults already: no per-message deflate (socketioxide has none), no connection-state
    // recovery, default ping interval and timeout, both transports.
    let (layer, io) = SocketIo::builder().req_path("/socket.io").build_layer();
    let authenticate = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let admitted = admit(&verifier, auth.as_ref().ok());
        std::future::ready(admitted.map(|rooms| {
            socket.extensions.insert(rooms);
        }))
    };
    io.ns("/streaming", on_connect.with(authenticate));

    let app = axum::Router::new().layer(layer);
    let listener = TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let address = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}")?;
        stdout.flush()?;
    }
    // axum's defaults, as a bare deployment runs: no TCP_NODELAY (Node's `net` sets it), so
    // Nagle's algorithm merges this server's small writes into fewer segments.
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(io))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "test-secret";

    fn token(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn valid_token() -> String {
        token(
            &json!({ "sub": "u1", "exp": get_current_timestamp() + 60 }),
            SECRET,
        )
    }

    fn refusal(auth: &Value) -> Option<String> {
        admit(&Verifier::new(SECRET), Some(auth))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn admits_a_valid_handshake_with_its_rooms() {
        let auth = json!({ "token": valid_token(), "rooms": ["bench:r0", "bench:r1"] });
        let Rooms(rooms) = admit(&Verifier::new(SECRET), Some(&auth)).unwrap();
        assert_eq!(rooms, ["bench:r0", "bench:r1"]);
    }

    #[test]
    fn refuses_bad_tokens_with_auth_failed() {
        let now = get_current_timestamp();
        for token in [
            json!(null),
            json!("not.a.jwt"),
            json!(token(&json!({ "sub": "u", "exp": now + 60 }), "other")),
            json!(token(&json!({ "sub": "u", "exp": now - 1 }), SECRET)),
            json!(token(&json!({ "sub": "u" }), SECRET)),
            json!(token(&json!({ "exp": now + 60 }), SECRET)),
            json!(token(&json!({ "sub": "", "exp": now + 60 }), SECRET)),
        ] {
            let auth = json!({ "token": token, "rooms": [] });
            assert_eq!(refusal(&auth).as_deref(), Some("AUTH_FAILED"), "{token}");
        }
        assert!(admit(&Verifier::new(SECRET), None).is_err());
    }

    #[test]
    fn refuses_bad_rooms_with_validation_failed() {
        let too_many: Vec<String> = (0..=MAX_ROOMS).map(|i| format!("r{i}")).collect();
        for rooms in [
            json!(null),
            json!("bench:r0"),
            json!([1]),
            json!(too_many),
            json!(["x".repeat(MAX_ROOM_BYTES + 1)]),
        ] {
            let auth = json!({ "token": valid_token(), "rooms": rooms });
            assert_eq!(
                refusal(&auth).as_deref(),
                Some("VALIDATION_FAILED"),
                "{rooms}"
            );
        }
    }

    #[test]
    fn reads_only_object_publications() {
        assert_eq!(
            publication(json!({ "room": "r", "data": null })),
            Some(("r".to_owned(), Value::Null))
        );
        for payload in [
            json!("r"),
            json!(1),
            json!(["r", 1]),
            json!({ "data": 1 }),
            json!({ "room": "r" }),
            json!({ "room": 1, "data": 1 }),
        ] {
            assert_eq!(publication(payload.clone()), None, "{payload}");
        }
    }
}
