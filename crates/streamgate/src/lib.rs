#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod gateway;

pub use gateway::{BuildError, Gateway, GatewayBuilder};
#[cfg(feature = "jwt")]
pub use streamgate_auth::{
    ApiKey, ApiKeys, AuthConfigError, CROSS_TENANT_PERMISSION, ClaimNames, FnAuthenticator,
    GuestRules, JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey, KindRules,
    ROOM_PERMISSION_PREFIX, Requirement, Strategies, Strategy, TenantPolicy,
};
pub use streamgate_core::{
    Action, AuthError, Authenticator, Authorizer, Backplane, BoxFuture, CommandContext,
    CommandError, CommandHandler, Credentials, Delivery, DeliveryReport, HistoryStore, Hub,
    HubConfig, LocalBackplane, MemoryHistory, MemoryPresence, Metrics, MetricsSnapshot, OpenPolicy,
    PresenceStore, Principal, PrincipalKind, Publish, PublishError, PublishOutcome, RateKey,
    RateLimiter, RateSubject, Recipient, Recovery, RoomPolicy, STREAM_CANCEL, SnapshotError,
    StaticTokens, StreamHandle, Target, Transport, Typed, Unlimited, typed,
};
pub use streamgate_protocol::{ErrorCode, Payload, Position, Priority, RoomId, RoomIdError};
#[cfg(feature = "ratelimit")]
pub use streamgate_ratelimit::{
    ConfigError as RateLimitConfigError, HttpRateLimit, HttpRateLimitLayer, KeyedRateLimiter, Rate,
    RateLimitConfig,
};
#[cfg(feature = "socketio")]
pub use streamgate_socketio::SocketIoConfig;
#[cfg(feature = "sse")]
pub use streamgate_sse::SseConfig;
#[cfg(feature = "ws")]
pub use streamgate_ws::WsConfig;

/// The wire protocol: frames, codecs and stream update types, for clients and tools.
pub mod protocol {
    pub use streamgate_protocol::*;
}
