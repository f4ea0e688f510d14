//! A chat service on the facade: conversation rooms per organisation; send, edit and delete
//! with ownership checks; typing indicators; read receipts; delivery status.
//!
//! - **Rooms** are `conversation:{org}.{id}`. [`TenantPolicy`] binds each room to the
//!   organisation before the first dot, so a user whose principal carries tenant `globex`
//!   cannot join, type in, or send commands about `conversation:acme.42`
//!   (`ROOM_ACCESS_DENIED`). The principal's tenant comes from the authenticator: the `tenant`
//!   claim of a JWT, or [`Principal::with_tenant`](streamgate::Principal::with_tenant).
//! - **Commands** (see [`commands`]) store the change in [`Messages`] and publish it to the
//!   room (see [`events`]): `message.send`, `message.edit` and `message.delete` (the author
//!   only, else `PERMISSION_DENIED`), `message.read` (a receipt for the room),
//!   `message.delivered` (a `message.status` for the author's sessions only) and
//!   `message.list` (to reload a conversation that could not be resumed).
//! - **Typing** is the gateway's built-in `typing_start` / `typing_stop`: members receive
//!   volatile `typing.start` / `typing.stop` publications with the user.
//! - **Rate limits** are the defaults of [`RateLimitConfig`]: `message.send` 10 per minute,
//!   `message.edit` and `message.delete` 3 per minute, typing 5 per 10 s, per user across their
//!   sessions (`RATE_LIMITED` with `retry_after_ms`).
//!
//! Every transport of the facade serves the chat: raw WebSocket (`/ws`), Server-Sent Events
//! (`/sse`) and Socket.IO (namespace `/streaming`). A client joins the conversation, then sends
//! commands naming it:
//!
//! ```json
//! {"type":"join","id":1,"room":"conversation:acme.42"}
//! {"type":"command","id":2,"name":"message.send","room":"conversation:acme.42","data":{"text":"hi"}}
//! {"type":"typing_start","id":3,"room":"conversation:acme.42"}
//! ```
//!
//! ```
//! use streamgate::{Gateway, Principal, StaticTokens};
//! use streamgate_examples::chat::Chat;
//!
//! let tokens = StaticTokens::new()
//!     .with_token("alice-token", Principal::user("alice").with_tenant("acme"));
//! let chat = Chat::build(Gateway::builder().authenticator(tokens))?;
//! let app: axum::Router = chat.router();
//! # Ok::<(), streamgate_examples::chat::ChatError>(())
//! ```

pub mod commands;
pub mod events;
mod store;

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use streamgate::{
    BuildError, CommandContext, CommandError, CommandHandler, Gateway, GatewayBuilder,
    KeyedRateLimiter, RateLimitConfig, RateLimitConfigError, RoomId, RoomIdError, RoomPolicy,
    TenantPolicy, typed,
};
use validator::Validate;

pub use store::{Conversation, MAX_MESSAGES, Message, MessageView, Messages};

/// The room kind of conversations: `conversation:{org}.{id}`.
pub const ROOM_KIND: &str = "conversation";

/// The room of conversation `id` of organisation `org`.
///
/// ```
/// let room = streamgate_examples::chat::conversation("acme", "42")?;
/// assert_eq!(room.as_str(), "conversation:acme.42");
/// # Ok::<(), streamgate::RoomIdError>(())
/// ```
pub fn conversation(org: &str, id: &str) -> Result<RoomId, RoomIdError> {
    format!("{ROOM_KIND}:{org}.{id}").parse()
}

/// The chat could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The gateway's settings are invalid.
    #[error(transparent)]
    Gateway(#[from] BuildError),
    /// The rate limits are invalid.
    #[error(transparent)]
    RateLimit(#[from] RateLimitConfigError),
}

/// A running chat: the gateway with the chat's commands, policy and limits, and its message
/// store. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Chat {
    gateway: Gateway,
    messages: Messages,
    limiter: KeyedRateLimiter,
}

impl Chat {
    /// Builds the chat on `gateway`, which must carry an authenticator whose principals have a
    /// user and a tenant (the organisation). Sets the authorizer ([`TenantPolicy`]: each
    /// organisation reaches only its own conversations), the rate limiter (the default
    /// quotas), the `conversation` room policy (1 000 publications kept for an hour, for
    /// resume) and the chat's commands, replacing any earlier authorizer or rate limiter.
    pub fn build(gateway: GatewayBuilder) -> Result<Self, ChatError> {
        Self::with_limits(gateway, RateLimitConfig::default())
    }

    /// [`build`](Self::build) with other command quotas.
    pub fn with_limits(
        gateway: GatewayBuilder,
        limits: RateLimitConfig,
    ) -> Result<Self, ChatError> {
        let messages = Messages::default();
        let limiter = KeyedRateLimiter::new(limits)?;
        let gateway = gateway
            .authorizer(TenantPolicy::new())
            .rate_limiter(limiter.clone())
            .room_kind(
                ROOM_KIND,
                RoomPolicy::default().history(1_000, Duration::from_secs(3600)),
            );
        let gateway = gateway
            .command(commands::SEND, handler(&messages, commands::send))
            .command(commands::EDIT, handler(&messages, commands::edit))
            .command(commands::DELETE, handler(&messages, commands::delete))
            .command(commands::READ, handler(&messages, commands::read))
            .command(commands::DELIVERED, handler(&messages, commands::delivered))
            .command(commands::LIST, handler(&messages, commands::list))
            .build()?;
        Ok(Self {
            gateway,
            messages,
            limiter,
        })
    }

    /// The routes of every transport, to serve (or merge into your app).
    pub fn router(&self) -> axum::Router {
        self.gateway.router()
    }

    /// The gateway, to publish from the server side or to shut down.
    #[must_use]
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The message store.
    #[must_use]
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    /// The command rate limiter; its [`http_layer`](KeyedRateLimiter::http_layer) limits HTTP
    /// routes of your own by client address.
    #[must_use]
    pub fn limiter(&self) -> &KeyedRateLimiter {
        &self.limiter
    }
}

/// `f` as a typed command handler over the shared store.
fn handler<T, R>(
    messages: &Messages,
    f: fn(&Messages, &CommandContext, T) -> Result<R, CommandError>,
) -> impl CommandHandler
where
    T: DeserializeOwned + Validate + Send + 'static,
    R: Serialize + Send + 'static,
{
    let messages = messages.clone();
    // The handlers never wait: each is one locked change and one publish.
    typed(move |ctx, data: T| std::future::ready(f(&messages, &ctx, data)))
}
