//! The server's configuration: a TOML file, `STREAMGATE_*` environment overrides, defaults that
//! run with no file at all, and validation whose every error names the key.
//!
//! ```
//! use streamgate_server::config::ServerConfig;
//!
//! // The minimal form of older deployments keeps working.
//! let config = ServerConfig::from_toml_str("[websocket]\nenabled = true\nport = 3000\n", [])?;
//! assert_eq!(config.listen().port(), 3000);
//!
//! // An environment variable overrides a key: sections and keys joined by `__`.
//! let env = [("STREAMGATE_SERVER__MAX_CONNECTIONS".to_owned(), "500".to_owned())];
//! let config = ServerConfig::from_toml_str("", env)?;
//! assert_eq!(config.server.max_connections, 500);
//!
//! // Errors name the key.
//! let err = ServerConfig::from_toml_str("[server]\nmax_connections = \"many\"\n", [])
//!     .expect_err("not a number");
//! assert!(err.to_string().starts_with("server.max_connections:"), "{err}");
//! # Ok::<(), streamgate_server::config::ConfigErrors>(())
//! ```

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use streamgate::{ApiKey, ClaimNames, JwtAlgorithm, JwtConfig, JwtKey, RoomPolicy, TenantPolicy};

use crate::units::{Quota, Span};

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "STREAMGATE_";

/// The address served when neither `server.listen` nor `websocket.port` is set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// One configuration problem: the key (`server.listen`, `rooms.execution.history_ttl`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending key, dotted; `(file)` for a file that is not TOML at all.
    pub key: String,
    /// What is wrong, and where the value came from when it was the environment.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            key: key.into(),
            message: message.into(),
        }])
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[server]`: the listener and process-wide limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1:8080`, or `websocket.port` on 127.0.0.1).
    pub listen: Option<SocketAddr>,
    /// Open connections beyond which new ones are refused with `SERVER_OVERLOADED`.
    pub max_connections: usize,
    /// Largest accepted HTTP API request body, bytes.
    pub max_body_bytes: usize,
    /// How long a SIGTERM/SIGINT waits for clients to leave and queues to drain.
    pub shutdown_grace: Span,
    /// Browser origins allowed to call the HTTP API and connect (`["*"]`: any; empty: same
    /// origin only).
    pub cors_origins: Vec<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `streamgate=debug,info`).
    pub log_level: String,
    /// Serve the demo page at `/` and `POST /demo/run` (default: on with development auth,
    /// off otherwise).
    pub demo: Option<bool>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: None,
            max_connections: 10_000,
            max_body_bytes: 64 * 1024,
            shutdown_grace: Span(Duration::from_secs(10)),
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            demo: None,
        }
    }
}

/// `[websocket]`: the raw WebSocket transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSection {
    /// Serve it.
    pub enabled: bool,
    /// Its path.
    pub path: String,
    /// The port to listen on, on 127.0.0.1 (the older minimal form; prefer `server.listen`).
    pub port: Option<u16>,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/ws".into(),
            port: None,
        }
    }
}

/// `[sse]`: the Server-Sent Events transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseSection {
    /// Serve it.
    pub enabled: bool,
    /// The event stream's path.
    pub path: String,
    /// Where SSE clients POST commands.
    pub commands_path: String,
}

impl Default for SseSection {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/sse".into(),
            commands_path: "/sse/commands".into(),
        }
    }
}

/// `[socketio]`: the Socket.IO transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSection {
    /// Serve it.
    pub enabled: bool,
    /// The Engine.IO path.
    pub path: String,
    /// The namespace clients connect to.
    pub namespace: String,
}

impl Default for SocketIoSection {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/socket.io".into(),
            namespace: "/streaming".into(),
        }
    }
}

/// `[auth.jwt]`: how client JWTs are verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// The only accepted algorithm (`HS256`, `RS256`, `ES256`, `EdDSA` …).
    pub algorithm: JwtAlgorithm,
    /// `{ secret = "…" }`, `{ base64_secret = "…" }`, `{ pem_file = "…" }` or
    /// `{ jwks_file = "…" }`.
    pub key: JwtKey,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Span,
    /// Refuse tokens without a tenant claim.
    #[serde(default)]
    pub require_tenant: bool,
    /// Which claim holds what.
    #[serde(default)]
    pub claims: ClaimNames,
}

fn default_leeway() -> Span {
    Span(Duration::from_secs(30))
}

impl JwtSection {
    /// The authenticator's configuration.
    #[must_use]
    pub fn to_jwt_config(&self) -> JwtConfig {
        let mut config = JwtConfig::new(self.algorithm, self.key.clone())
            .leeway(self.leeway.0)
            .require_tenant(self.require_tenant)
            .claims(self.claims.clone());
        if let Some(issuer) = &self.issuer {
            config = config.issuer(issuer);
        }
        if let Some(audience) = &self.audience {
            config = config.audience(audience);
        }
        config
    }

    /// The key tokens are signed with, when the algorithm is one of the HMAC family (then
    /// the server can mint tokens: `token`, the demo).
    #[must_use]
    pub fn signing_key(&self) -> Option<jsonwebtoken::EncodingKey> {
        if !matches!(
            self.algorithm,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        ) {
            return None;
        }
        match &self.key {
            JwtKey::Secret(s) => Some(jsonwebtoken::EncodingKey::from_secret(s.as_bytes())),
            JwtKey::Base64Secret(b) => jsonwebtoken::EncodingKey::from_base64_secret(b).ok(),
            _ => None,
        }
    }
}

/// `[auth]`: who clients are and what they may reach.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// JWT verification. Without it and without `api_keys`, a development secret is generated
    /// at start.
    pub jwt: Option<JwtSection>,
    /// API keys clients may connect with (`{ name, sha256, tenant, scopes }`).
    pub api_keys: Vec<ApiKey>,
    /// Tenant isolation and per-kind rules (`shared_kinds`, `kinds`, `guests` …).
    pub policy: TenantPolicy,
}

/// `[api]`: the HTTP API for backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Serve `/api/v1`.
    pub enabled: bool,
    /// Keys backends call it with (`{ name, sha256, tenant }`; a key with a tenant only
    /// reaches that tenant's rooms). Without any, a development key is generated at start.
    pub keys: Vec<ApiKey>,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: Vec::new(),
        }
    }
}

/// `[rooms.<kind>]`: the policy of one room kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSection {
    /// Publications kept for resume.
    pub history_size: usize,
    /// How long they are kept.
    pub history_ttl: Span,
    /// Track presence in rooms of this kind.
    pub presence: bool,
    /// Sessions allowed at once (`ROOM_FULL` beyond).
    pub max_members: Option<usize>,
    /// Clients may publish into rooms of this kind with the `publish` command (chat); by
    /// default only backends publish, through the HTTP API.
    pub client_publish: bool,
}

impl Default for RoomSection {
    fn default() -> Self {
        let policy = RoomPolicy::default();
        Self {
            history_size: policy.history_size,
            history_ttl: Span(policy.history_ttl),
            presence: policy.presence,
            max_members: policy.max_members,
            client_publish: false,
        }
    }
}

impl RoomSection {
    fn with_history(size: usize, ttl: Duration) -> Self {
        Self {
            history_size: size,
            history_ttl: Span(ttl),
            ..Self::default()
        }
    }

    /// The hub's policy for the kind.
    #[must_use]
    pub fn to_policy(&self) -> RoomPolicy {
        let mut policy = RoomPolicy::default()
            .history(self.history_size, self.history_ttl.0)
            .presence(self.presence);
        if let Some(max) = self.max_members {
            policy = policy.max_members(max);
        }
        policy
    }
}

/// `[rate_limits]`: per-user command quotas and connection attempts per address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSection {
    /// Apply them.
    pub enabled: bool,
    /// Quotas by command kind (`"message.send" = "10/min"`), added to the defaults.
    pub commands: BTreeMap<String, Quota>,
    /// Quota of kinds without their own.
    pub default_command: Option<Quota>,
    /// One ceiling over all commands of all users.
    pub global: Option<Quota>,
    /// After a refusal, refuse that user and kind for this long.
    pub block_for: Option<Span>,
    /// New connections per client address.
    pub connect_per_address: Quota,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            enabled: true,
            commands: BTreeMap::new(),
            default_command: None,
            global: None,
            block_for: None,
            connect_per_address: Quota {
                count: 60,
                per: Duration::from_secs(60),
            },
        }
    }
}

impl RateLimitSection {
    /// The limiter's configuration.
    #[must_use]
    pub fn to_config(&self) -> streamgate::RateLimitConfig {
        let mut config = streamgate::RateLimitConfig::default()
            .default_command(self.default_command.map(Into::into))
            .global(self.global.map(Into::into))
            .block_for(self.block_for.map(|s| s.0))
            .connect_per_address(self.connect_per_address.into());
        for (kind, quota) in &self.commands {
            config = config.command(kind.clone(), (*quota).into());
        }
        config
    }
}

/// `[queues]`: per-session and offline queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSection {
    /// Frames a session's outbound queue holds before the session is dropped as slow.
    pub session_capacity: usize,
    /// Publications kept per offline user.
    pub offline_size: usize,
    /// How long they wait.
    pub offline_ttl: Span,
}

impl Default for QueueSection {
    fn default() -> Self {
        let hub = streamgate::HubConfig::default();
        Self {
            session_capacity: hub.queue_capacity,
            offline_size: hub.offline_queue_size,
            offline_ttl: Span(hub.offline_ttl),
        }
    }
}

/// `[history]`: resumable history across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// A file the history is written to on shutdown and read back at start, so clients resume
    /// across a restart (same epochs and offsets).
    pub snapshot: Option<PathBuf>,
}

/// The whole configuration. Every key has a default; an empty file is a working development
/// server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listener and limits.
    pub server: ServerSection,
    /// WebSocket transport.
    pub websocket: WebSocketSection,
    /// Server-Sent Events transport.
    pub sse: SseSection,
    /// Socket.IO transport.
    pub socketio: SocketIoSection,
    /// Client authentication and authorization.
    pub auth: AuthSection,
    /// The HTTP API.
    pub api: ApiSection,
    /// Room kinds; rooms of other kinds are refused (joins and API calls alike).
    pub rooms: BTreeMap<String, RoomSection>,
    /// Rate limits.
    pub rate_limits: RateLimitSection,
    /// Queue sizes.
    pub queues: QueueSection,
    /// History persistence.
    pub history: HistorySection,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        let rooms = [
            ("execution", RoomSection::with_history(10_000, hour)),
            (
                "conversation",
                RoomSection {
                    presence: true,
                    ..RoomSection::with_history(500, 24 * hour)
                },
            ),
            ("task", RoomSection::with_history(1_000, hour)),
            ("user", RoomSection::with_history(100, hour)),
            ("org", RoomSection::with_history(100, hour)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            server: ServerSection::default(),
            websocket: WebSocketSection::default(),
            sse: SseSection::default(),
            socketio: SocketIoSection::default(),
            auth: AuthSection::default(),
            api: ApiSection::default(),
            rooms,
            rate_limits: RateLimitSection::default(),
            queues: QueueSection::default(),
            history: HistorySection::default(),
        }
    }
}

/// Sets `path` (lower-case keys) in `table` to `raw`, read as a TOML value when it is one
/// (`500`, `true`, `["a"]`) and as a string otherwise.
fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{}` is not a section",
                    parents[..=depth].join(".")
                ));
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

impl ServerConfig {
    /// Reads `path` (when given) and applies the `STREAMGATE_*` overrides found in `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors::one("(file)", format!("cannot read {}: {e}", path.display()))
            })?,
            None => String::new(),
        };
        Self::from_toml_str(&text, env)
    }

    /// Parses `text`, applies the overrides in `env` (`STREAMGATE_SECTION__KEY=value`; other
    /// variables are ignored) and validates the result.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigErrors::one("(file)", e.to_string()))?;
        let mut from_env = BTreeMap::new();
        let mut env: Vec<_> = env.into_iter().collect();
        env.sort();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            let key = path.join(".");
            set_path(&mut table, &path, &value)
                .map_err(|e| ConfigErrors::one(key.clone(), format!("{e} (from {name})")))?;
            from_env.insert(key, name);
        }
        let config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let origin = from_env
                    .iter()
                    .find(|(k, _)| key.starts_with(k.as_str()) || k.starts_with(&key))
                    .map(|(_, name)| format!(" (from {name})"))
                    .unwrap_or_default();
                let key = if key == "." { "(file)".into() } else { key };
                ConfigErrors::one(key, format!("{}{origin}", e.into_inner()))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The address to listen on.
    #[must_use]
    pub fn listen(&self) -> SocketAddr {
        match (self.server.listen, self.websocket.port) {
            (Some(addr), _) => addr,
            (None, Some(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
            (None, None) => DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
        }
    }

    /// Whether client credentials are configured (otherwise a development secret is used).
    #[must_use]
    pub fn has_client_auth(&self) -> bool {
        self.auth.jwt.is_some() || !self.auth.api_keys.is_empty()
    }

    /// Whether the demo page is served.
    #[must_use]
    pub fn demo_enabled(&self) -> bool {
        self.server.demo.unwrap_or(!self.has_client_auth())
    }

    /// Checks what serde cannot: ranges, paths, keys that must agree, files that must exist.
    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: String| {
            errors.push(ConfigError {
                key: key.to_owned(),
                message,
            });
        };
        if self.server.max_connections == 0 {
            err("server.max_connections", "must be at least 1".into());
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            err(
                "server.max_body_bytes",
                "must be between 1024 and 16777216".into(),
            );
        }
        if let (Some(addr), Some(port)) = (self.server.listen, self.websocket.port)
            && addr.port() != port
        {
            err(
                "websocket.port",
                format!("{port} conflicts with server.listen {addr}; set only one"),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.server.log_level) {
            err("server.log_level", format!("not a tracing filter: {e}"));
        }
        for (i, origin) in self.server.cors_origins.iter().enumerate() {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok()
                    && !origin.ends_with('/'));
            if !ok {
                err(
                    &format!("server.cors_origins[{i}]"),
                    format!("`{origin}` is not an origin (scheme://host[:port], no path) or \"*\""),
                );
            }
        }
        let mut paths: Vec<(&str, &str)> = Vec::new();
        if self.websocket.enabled {
            paths.push(("websocket.path", &self.websocket.path));
        }
        if self.sse.enabled {
            paths.push(("sse.path", &self.sse.path));
            paths.push(("sse.commands_path", &self.sse.commands_path));
        }
        if self.socketio.enabled {
            paths.push(("socketio.path", &self.socketio.path));
            if !self.socketio.namespace.starts_with('/') {
                err("socketio.namespace", "must start with `/`".into());
            }
        }
        if paths.is_empty() {
            err(
                "websocket.enabled",
                "every transport is off (websocket, sse, socketio): clients could not connect"
                    .into(),
            );
        }
        for (i, (key, path)) in paths.iter().enumerate() {
            if !path.starts_with('/') || path.len() < 2 {
                err(key, format!("`{path}` must start with `/` and name a path"));
            } else if ["/api", "/healthz", "/readyz", "/metrics", "/demo"]
                .iter()
                .any(|reserved| path == reserved || path.starts_with(&format!("{reserved}/")))
            {
                err(key, format!("`{path}` is reserved by the server"));
            } else if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p == path) {
                err(key, format!("`{path}` is already used by {other}"));
            }
        }
        if self.rooms.is_empty() {
            err("rooms", "no room kind: clients could join nothing".into());
        }
        for (kind, room) in &self.rooms {
            if let Err(e) = streamgate::RoomId::new(kind, "x") {
                err(&format!("rooms.{kind}"), format!("not a room kind: {e}"));
            }
            if room.history_size > 1_000_000 {
                err(
                    &format!("rooms.{kind}.history_size"),
                    "at most 1000000".into(),
                );
            }
            if room.max_members == Some(0) {
                err(
                    &format!("rooms.{kind}.max_members"),
                    "must be at least 1".into(),
                );
            }
        }
        if let Some(jwt) = &self.auth.jwt
            && let Err(e) = streamgate::JwtAuthenticator::new(jwt.to_jwt_config())
        {
            err("auth.jwt", e.to_string());
        }
        check_keys("auth.api_keys", &self.auth.api_keys, &mut err);
        check_keys("api.keys", &self.api.keys, &mut err);
        if self.demo_enabled()
            && self.has_client_auth()
            && self
                .auth
                .jwt
                .as_ref()
                .and_then(JwtSection::signing_key)
                .is_none()
        {
            err(
                "server.demo",
                "the demo mints tokens: it needs auth.jwt with an HS256/HS384/HS512 secret".into(),
            );
        }
        if self.rate_limits.enabled
            && let Err(e) = streamgate::KeyedRateLimiter::new(self.rate_limits.to_config())
        {
            err("rate_limits", e.to_string());
        }
        if self.queues.session_capacity == 0 {
            err("queues.session_capacity", "must be at least 1".into());
        }
        if let Some(path) = &self.history.snapshot {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                err(
                    "history.snapshot",
                    format!("the directory of {} does not exist", path.display()),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The effective configuration as TOML with every secret masked, for `check-config`.
    #[must_use]
    pub fn to_masked_toml(&self) -> String {
        let mut value = toml::Value::try_from(self)
            .unwrap_or_else(|e| toml::Value::String(format!("unprintable: {e}")));
        mask(&mut value);
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# unprintable: {e}\n"))
    }
}

fn check_keys(section: &str, keys: &[ApiKey], err: &mut impl FnMut(&str, String)) {
    for (i, key) in keys.iter().enumerate() {
        if key.name.trim().is_empty() {
            err(&format!("{section}[{i}].name"), "must not be empty".into());
        } else if keys[..i].iter().any(|k| k.name == key.name) {
            err(
                &format!("{section}[{i}].name"),
                format!("`{}` is used by an earlier key", key.name),
            );
        }
    }
}

const SECRET_KEYS: [&str; 4] = ["secret", "base64_secret", "jwks", "sha256"];

fn mask(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *v = toml::Value::String("********".into());
                } else {
                    mask(v);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        match ServerConfig::from_toml_str(text, []) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn empty_is_the_development_server() {
        let config = ServerConfig::from_toml_str("", []).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen().to_string(), DEFAULT_LISTEN);
        assert!(config.demo_enabled());
        assert!(!config.has_client_auth());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nmax_connections = -1\n", "server.max_connections"),
            ("[websocket]\nprot = 3000\n", "websocket.prot"),
            (
                "[rooms.execution]\nhistory_ttl = \"forever\"\n",
                "rooms.execution.history_ttl",
            ),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[sse]\npath = \"/ws\"\n", "sse.path"),
            (
                "[server]\ncors_origins = [\"example.com\"]\n",
                "server.cors_origins[0]",
            ),
            (
                "[auth.jwt]\nalgorithm = \"RS256\"\nkey = { pem_file = \"/nonexistent.pem\" }\n",
                "auth.jwt",
            ),
            (
                "[rate_limits.commands]\n\"message.send\" = \"0/min\"\n",
                "rate_limits.commands",
            ),
            (
                "[history]\nsnapshot = \"/nonexistent/dir/h.jsonl\"\n",
                "history.snapshot",
            ),
            ("[rooms.\"Bad Kind\"]\n", "rooms.Bad Kind"),
        ];
        for (text, key) in cases {
            let found = errors(text);
            assert!(
                found.iter().any(|e| e.key.starts_with(key)),
                "{text}: expected key {key}, got {found:?}"
            );
        }
    }

    #[test]
    fn environment_overrides_win_and_are_named_in_errors() {
        let env = [
            (
                "STREAMGATE_SERVER__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            ("STREAMGATE_SSE__ENABLED".to_owned(), "false".to_owned()),
            ("STREAMGATE_E2E_REQUIRE".to_owned(), "1".to_owned()),
            ("OTHER__THING".to_owned(), "1".to_owned()),
        ];
        let config = ServerConfig::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\n", env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen().port(), 9999);
        assert!(!config.sse.enabled);

        let env = [(
            "STREAMGATE_QUEUES__SESSION_CAPACITY".to_owned(),
            "lots".to_owned(),
        )];
        let Err(err) = ServerConfig::from_toml_str("", env) else {
            panic!("a non-number was accepted")
        };
        assert!(
            err.to_string().contains("queues.session_capacity")
                && err
                    .to_string()
                    .contains("STREAMGATE_QUEUES__SESSION_CAPACITY"),
            "{err}"
        );
    }

    #[test]
    fn masked_output_hides_secrets_and_parses_back() {
        let text = "[auth.jwt]\nalgorithm = \"HS256\"\nkey = { secret = \"hunter2-hunter2\" }\n\
                    [[api.keys]]\nname = \"backend\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n";
        let config = ServerConfig::from_toml_str(text, []).unwrap_or_else(|e| panic!("{e}"));
        let printed = config.to_masked_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("ba7816bf"), "{printed}");
        assert!(printed.contains("[rooms.execution]"), "{printed}");
    }
}
