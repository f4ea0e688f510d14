#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod ack;
mod auth;
mod authz;
mod backplane;
mod command;
mod config;
mod error;
mod history;
mod hub;
mod metrics;
mod offline;
mod outbound;
mod presence;
mod principal;
mod queue;
mod ratelimit;
mod session;
mod stream;
mod throttle;
mod transport;

pub use ack::{Delivery, DeliveryReport, Recipient};
pub use auth::{AuthError, Authenticator, BoxFuture, Credentials, StaticTokens};
pub use authz::{Action, Authorizer, OpenPolicy};
pub use backplane::{Backplane, LocalBackplane};
pub use command::{CommandContext, CommandError, CommandHandler, STREAM_CANCEL, Typed, typed};
pub use config::{ConfigError, HubConfig, RoomPolicy};
pub use error::PublishError;
pub use history::{HistoryStore, MemoryHistory, Recovery, SnapshotError};
pub use hub::{Hub, HubBuilder, HubStats, Publish, PublishOutcome, Target};
pub use metrics::{LatencySnapshot, Metrics, MetricsSnapshot};
pub use outbound::{OutFrame, Outbound};
pub use presence::{MemoryPresence, PresenceStore};
pub use principal::{Principal, PrincipalKind};
pub use ratelimit::{RateKey, RateLimiter, RateSubject, Unlimited, command_kind};
pub use session::{InvalidSessionId, SessionHandle, SessionId, SessionOptions, SessionQueue};
pub use stream::StreamHandle;
pub use streamgate_protocol::WireFormat;
pub use transport::{Transport, decode_query_component};
