//! Builds the gateway and the server's router from a [`ServerConfig`].

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use axum::{Router, http::HeaderValue};
use parking_lot::Mutex;
use rand::Rng;
use streamgate::{
    Action, ApiKey, ApiKeys, Authorizer, ErrorCode, Gateway, JwtAlgorithm, JwtAuthenticator,
    JwtConfig, JwtKey, KeyedRateLimiter, MemoryHistory, Principal, RoomId, SocketIoConfig,
    SseConfig, Strategies, StreamHandle, TenantPolicy, WsConfig,
};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::{
    client_publish::{self, ClientPublish},
    config::ServerConfig,
    token::Minter,
};

/// Secrets the configuration does not provide, generated for development at start and printed
/// once.
#[derive(Clone, Default)]
pub struct DevSecrets {
    /// HS256 secret for client tokens, when `[auth]` configures no credentials.
    pub jwt_secret: Option<String>,
    /// API key for `/api/v1`, when `[api]` configures none.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for DevSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSecrets")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Environment variable that fixes the development JWT secret (so that `token` and a running
/// development server agree).
pub const DEV_SECRET_ENV: &str = "STREAMGATE_DEV_SECRET";
/// Environment variable that fixes the development API key.
pub const DEV_API_KEY_ENV: &str = "STREAMGATE_DEV_API_KEY";

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl DevSecrets {
    /// What `config` lacks: taken from [`DEV_SECRET_ENV`] / [`DEV_API_KEY_ENV`] when set,
    /// generated otherwise.
    #[must_use]
    pub fn for_config(config: &ServerConfig) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            jwt_secret: (!config.has_client_auth())
                .then(|| env(DEV_SECRET_ENV).unwrap_or_else(|| random_hex(32))),
            api_key: (config.api.enabled && config.api.keys.is_empty()).then(|| {
                env(DEV_API_KEY_ENV).unwrap_or_else(|| format!("sgk_dev_{}", random_hex(16)))
            }),
        }
    }
}

/// Refuses rooms of kinds the configuration does not list, then asks the tenant policy.
struct KnownKinds {
    kinds: BTreeSet<String>,
    policy: TenantPolicy,
}

impl Authorizer for KnownKinds {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        let room = match action {
            Action::Join(room) | Action::Publish(room) => Some(room),
            Action::Command { room, .. } => room,
            _ => None,
        };
        if room.is_some_and(|r| !self.kinds.contains(r.kind())) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        self.policy.authorize(principal, action)
    }
}

/// What the HTTP handlers share.
pub struct AppState {
    /// The gateway.
    pub gateway: Gateway,
    /// The configuration it was built from.
    pub config: ServerConfig,
    /// Keys for `/api/v1`.
    pub api_keys: ApiKeys,
    /// Tenant policy, for API keys bound to a tenant.
    pub policy: TenantPolicy,
    /// Streams opened through the API, by room.
    pub streams: Mutex<HashMap<RoomId, StreamHandle>>,
    /// Signs demo tokens, when the JWT key allows it.
    pub minter: Option<Minter>,
    /// The history, for snapshots.
    pub history: MemoryHistory,
    /// Cleared when shutdown starts: `/readyz` answers 503 from then on.
    pub ready: AtomicBool,
    /// When the server started.
    pub started: Instant,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Whether `/readyz` should say ready: not shutting down and the backplane is up.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.gateway.hub().backplane().is_ready()
    }

    /// Whether rooms of this kind are configured.
    #[must_use]
    pub fn knows_kind(&self, kind: &str) -> bool {
        self.config.rooms.contains_key(kind)
    }
}

/// The built server: its state and its router.
#[derive(Debug)]
pub struct App {
    /// Shared state.
    pub state: Arc<AppState>,
    /// Every route: transports, `/api/v1`, operations, demo.
    pub router: Router,
}

fn client_authenticator(config: &ServerConfig, secrets: &DevSecrets) -> anyhow::Result<Strategies> {
    let mut strategies = Strategies::new();
    if let Some(jwt) = &config.auth.jwt {
        strategies = strategies.jwt(JwtAuthenticator::new(jwt.to_jwt_config())?);
    } else if let Some(secret) = &secrets.jwt_secret {
        let jwt = JwtConfig::new(JwtAlgorithm::HS256, JwtKey::Secret(secret.clone()));
        strategies = strategies.jwt(JwtAuthenticator::new(jwt)?);
    }
    if !config.auth.api_keys.is_empty() {
        strategies = strategies.api_keys(ApiKeys::from_keys(config.auth.api_keys.clone())?);
    }
    Ok(strategies)
}

fn api_keys(config: &ServerConfig, secrets: &DevSecrets) -> anyhow::Result<ApiKeys> {
    let keys = ApiKeys::from_keys(config.api.keys.clone())?;
    if let Some(key) = &secrets.api_key {
        keys.insert(ApiKey::from_hash("development", &ApiKeys::hash(key))?);
    }
    Ok(keys)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers(Any)
        .max_age(std::time::Duration::from_secs(3600));
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}

/// Builds the gateway and the router. History is read back from the snapshot file when one
/// is configured and exists.
pub fn build(config: &ServerConfig, secrets: &DevSecrets) -> anyhow::Result<App> {
    let history = MemoryHistory::new();
    if let Some(path) = &config.history.snapshot
        && path.exists()
    {
        let file = std::fs::File::open(path)
            .with_context(|| format!("history.snapshot: cannot open {}", path.display()))?;
        let loaded = history
            .load(std::io::BufReader::new(file))
            .with_context(|| format!("history.snapshot: {} is not readable", path.display()))?;
        // A snapshot is used once: after a crash (no new snapshot), loading it again would
        // hand out offsets that clients already saw with other content. Without it, rooms
        // get new epochs and clients are told `recovered: false` instead.
        let used = path.with_extension("loaded");
        std::fs::rename(path, &used)
            .with_context(|| format!("history.snapshot: cannot move {} aside", path.display()))?;
        tracing::info!(publications = loaded, path = %path.display(), "history restored");
    }
    let origins = (!config.server.cors_origins.is_empty()
        && !config.server.cors_origins.iter().any(|o| o == "*"))
    .then(|| config.server.cors_origins.clone());

    let max_connections = config.server.max_connections;
    let mut builder = Gateway::builder()
        .authenticator(client_authenticator(config, secrets)?)
        .authorizer(KnownKinds {
            kinds: config.rooms.keys().cloned().collect(),
            policy: config.auth.policy.clone(),
        })
        .history(history.clone())
        .max_connections(max_connections)
        .queue_capacity(config.queues.session_capacity)
        .offline_queue(config.queues.offline_size, config.queues.offline_ttl.0);
    for (kind, room) in &config.rooms {
        builder = builder.room_kind(kind.clone(), room.to_policy());
    }
    let publishing = ClientPublish::new(
        config
            .rooms
            .iter()
            .filter(|(_, room)| room.client_publish)
            .map(|(kind, _)| kind.clone()),
    );
    if !publishing.is_empty() {
        builder = builder.command(client_publish::COMMAND, publishing);
    }
    if config.rate_limits.enabled {
        builder = builder.rate_limiter(KeyedRateLimiter::new(config.rate_limits.to_config())?);
    }
    builder = if config.websocket.enabled {
        let mut ws = WsConfig::default().path(&config.websocket.path);
        if let Some(origins) = &origins {
            ws = ws.allowed_origins(origins.clone());
        }
        builder.websocket(ws)
    } else {
        builder.without_websocket()
    };
    builder = if config.sse.enabled {
        let mut sse = SseConfig::default()
            .path(&config.sse.path)
            .commands_path(&config.sse.commands_path);
        if let Some(origins) = &origins {
            sse = sse.allowed_origins(origins.clone());
        }
        builder.sse(sse)
    } else {
        builder.without_sse()
    };
    builder = if config.socketio.enabled {
        let mut sio = SocketIoConfig::default()
            .path(&config.socketio.path)
            .namespace(&config.socketio.namespace);
        if let Some(origins) = &origins {
            sio = sio.allowed_origins(origins.clone());
        }
        builder.socketio(sio)
    } else {
        builder.without_socketio()
    };
    let gateway = builder.build()?;

    let minter = match (&config.auth.jwt, &secrets.jwt_secret) {
        (Some(jwt), _) => Minter::from_config(jwt),
        (None, Some(secret)) => Some(Minter::hs256(secret.as_bytes())),
        (None, None) => None,
    };
    let state = Arc::new(AppState {
        gateway: gateway.clone(),
        config: config.clone(),
        api_keys: api_keys(config, secrets)?,
        policy: config.auth.policy.clone(),
        streams: Mutex::new(HashMap::new()),
        minter,
        history,
        ready: AtomicBool::new(true),
        started: Instant::now(),
    });

    let mut router = gateway
        .router()
        .merge(crate::ops::router(Arc::clone(&state)));
    if config.api.enabled {
        router = router.merge(crate::api::router(Arc::clone(&state)));
    }
    if config.demo_enabled() {
        router = router.merge(crate::demo::router(Arc::clone(&state)));
    }
    if let Some(cors) = cors(&config.server.cors_origins) {
        router = router.layer(cors);
    }
    Ok(App { state, router })
}
