//! Application commands: the last step of the inbound pipeline. After a `command` frame was
//! decoded and validated (transport), rate limited and authorized (`Action::Command`), the hub
//! hands it to the [`CommandHandler`] registered under its name and answers with `reply` (the
//! handler's data) or a typed `error`, both carrying the request id.
//!
//! Handlers run on the session's own task, never spawned: a session's answers stay in order
//! with each other and with its publications, and one session's commands are handled one at a
//! time. A handler must therefore not block; await instead, and spawn (owned) work that may
//! take long, answering right away.

use std::{future::Future, marker::PhantomData, sync::Arc};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use streamgate_protocol::{ErrorBody, ErrorCode, Payload, RoomId};
use validator::Validate;

use crate::{Action, BoxFuture, Hub, Principal, SessionId, session::SessionShared};

/// What a [`CommandHandler`] knows about the command it handles: who sent it, from which
/// session, about which room, and the hub to publish with.
pub struct CommandContext {
    pub(crate) hub: Hub,
    pub(crate) session: Arc<SessionShared>,
    pub(crate) principal: Arc<Principal>,
    pub(crate) name: String,
    pub(crate) room: Option<RoomId>,
}

impl std::fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandContext")
            .field("session", &self.session.id)
            .field("name", &self.name)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl CommandContext {
    /// The hub, to publish or stream with.
    #[must_use]
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Who sent the command (as of the time it arrived).
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The sending session.
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        self.session.id
    }

    /// The command's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command frame's `room`, if it named one.
    #[must_use]
    pub fn room(&self) -> Option<&RoomId> {
        self.room.as_ref()
    }

    /// Whether the sending session is a member of `room` (joined, not left).
    #[must_use]
    pub fn is_member(&self, room: &RoomId) -> bool {
        self.session.rooms.lock().contains(room)
    }

    /// Asks the hub's [`Authorizer`](crate::Authorizer) whether the sender may perform
    /// `action`, for handlers that learn the room (or object) only from the command's data.
    pub fn authorize(&self, action: Action<'_>) -> Result<(), CommandError> {
        self.hub
            .inner
            .authorizer
            .authorize(&self.principal, action)
            .map_err(|code| CommandError::Refused {
                code,
                message: "you may not send this command".into(),
            })
    }
}

/// Why a command failed. Each variant maps to a protocol error code; only the messages of
/// [`Invalid`](CommandError::Invalid), [`NotFound`](CommandError::NotFound) and
/// [`Refused`](CommandError::Refused) reach the client, so keep internals out of them and put
/// them in [`Internal`](CommandError::Internal), which is logged at `warn` and answered with a
/// generic `INTERNAL`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The sender may not do this (`PERMISSION_DENIED`), e.g. edit someone else's message.
    #[error("permission denied")]
    PermissionDenied,
    /// The command concerns a room the session has not joined (`NOT_JOINED`).
    #[error("join the room first")]
    NotJoined,
    /// What the command refers to does not exist (`VALIDATION_FAILED`, the message is sent).
    #[error("not found: {0}")]
    NotFound(String),
    /// The command's data is wrong (`VALIDATION_FAILED`, the message is sent).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Refused with a specific code (from an [`Authorizer`](crate::Authorizer), say).
    #[error("{code}: {message}")]
    Refused {
        /// The code to answer with.
        code: ErrorCode,
        /// A message for the client.
        message: String,
    },
    /// Something failed on the server; the detail is logged, never sent (`INTERNAL`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// The protocol code for this failure.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PermissionDenied => ErrorCode::PermissionDenied,
            Self::NotJoined => ErrorCode::NotJoined,
            Self::NotFound(_) | Self::Invalid(_) => ErrorCode::ValidationFailed,
            Self::Refused { code, .. } => *code,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The `error` body sent to the client; an internal detail is logged here instead.
    pub(crate) fn into_body(self, command: &str) -> ErrorBody {
        let code = self.code();
        match self {
            Self::PermissionDenied => ErrorBody::new(code, "you may not do this"),
            Self::NotJoined => ErrorBody::new(code, "join the room first"),
            Self::NotFound(message) | Self::Invalid(message) | Self::Refused { message, .. } => {
                ErrorBody::new(code, message)
            }
            Self::Internal(detail) => {
                tracing::warn!(command, error = %detail, "command handler failed");
                ErrorBody::new(code, "internal error")
            }
        }
    }
}

/// Handles one application command by name. Object safe: the hub keeps handlers as
/// `Arc<dyn CommandHandler>`. Most handlers are written with [`typed`] instead of implementing
/// this by hand.
///
/// A handler runs on the session's task: it must not block (it is awaited in order with the session's other frames; spawn long work and publish its results).
///
/// ```
/// use streamgate_core::{BoxFuture, CommandContext, CommandError, CommandHandler};
/// use streamgate_protocol::Payload;
///
/// struct Whoami;
/// impl CommandHandler for Whoami {
///     fn call(&self, ctx: CommandContext, _data: Payload) -> BoxFuture<'_, Result<Payload, CommandError>> {
///         Box::pin(async move {
///             Payload::json(&ctx.principal().user).map_err(|e| CommandError::Internal(e.to_string()))
///         })
///     }
/// }
/// ```
pub trait CommandHandler: Send + Sync + 'static {
    /// Handles the command; `Ok` data becomes the `reply` frame's `data`.
    fn call(
        &self,
        ctx: CommandContext,
        data: Payload,
    ) -> BoxFuture<'_, Result<Payload, CommandError>>;
}

/// A [`CommandHandler`] from an async function of typed data; see [`typed`].
pub struct Typed<F, T> {
    f: F,
    // `fn() -> T`: the handler holds no `T`, so it is `Send + Sync` whatever `T` is.
    _data: PhantomData<fn() -> T>,
}

impl<F, T> std::fmt::Debug for Typed<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("data", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// Wraps an async function of typed data as a [`CommandHandler`]: the command's JSON `data` is
/// deserialized into `T` and validated (`VALIDATION_FAILED` otherwise, naming at most the
/// invalid fields), and the returned `R` is serialized as the `reply` data.
///
/// ```
/// use serde::Deserialize;
/// use streamgate_core::{CommandError, Hub, HubConfig, Publish, typed};
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// struct Send {
///     #[validate(length(min = 1, max = 4000))]
///     text: String,
/// }
///
/// let hub = Hub::builder(HubConfig::default())
///     .command("message.send", typed(|ctx, send: Send| async move {
///         let room = ctx.room().ok_or(CommandError::Invalid("name a room".into()))?;
///         let outcome = ctx
///             .hub()
///             .publish(room, Publish::json("message", &send.text).map_err(|e| CommandError::Internal(e.to_string()))?)
///             .map_err(|e| CommandError::Internal(e.to_string()))?;
///         Ok(outcome.position.offset)
///     }))
///     .build()?;
/// # Ok::<(), streamgate_core::ConfigError>(())
/// ```
pub fn typed<T, R, F, Fut>(f: F) -> Typed<F, T>
where
    T: DeserializeOwned + Validate + Send + 'static,
    R: Serialize,
    F: Fn(CommandContext, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, CommandError>> + Send + 'static,
{
    Typed {
        f,
        _data: PhantomData,
    }
}

/// Reads command data as `T`, with client-safe messages.
fn decode<T: DeserializeOwned + Validate>(data: &Payload) -> Result<T, CommandError> {
    let value: T = data.decode().map_err(|_| {
        CommandError::Invalid("command data does not have the expected shape".into())
    })?;
    value.validate().map_err(|errors| {
        let mut fields: Vec<_> = errors.field_errors().into_keys().collect();
        fields.sort_unstable();
        CommandError::Invalid(format!("invalid command data: {}", fields.join(", ")))
    })?;
    Ok(value)
}

impl<T, R, F, Fut> CommandHandler for Typed<F, T>
where
    T: DeserializeOwned + Validate + Send + 'static,
    R: Serialize,
    F: Fn(CommandContext, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, CommandError>> + Send + 'static,
{
    fn call(
        &self,
        ctx: CommandContext,
        data: Payload,
    ) -> BoxFuture<'_, Result<Payload, CommandError>> {
        let decoded = decode::<T>(&data);
        Box::pin(async move {
            let reply = (self.f)(ctx, decoded?).await?;
            Payload::json(&reply).map_err(|e| CommandError::Internal(e.to_string()))
        })
    }
}

/// The name of the built-in Stop command.
pub const STREAM_CANCEL: &str = "stream.cancel";

#[derive(Deserialize)]
struct CancelData {
    room: Option<RoomId>,
}

/// The built-in `stream.cancel` (Stop): cancels the running stream of a room the sender has
/// joined. The room is the command's `room`, or `data.room`. Authorized as
/// `Action::Command { name: "stream.cancel", room }` with the resolved room; a room without a
/// running stream answers `VALIDATION_FAILED`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamCancel;

impl CommandHandler for StreamCancel {
    fn call(
        &self,
        ctx: CommandContext,
        data: Payload,
    ) -> BoxFuture<'_, Result<Payload, CommandError>> {
        Box::pin(async move {
            let from_data = if data.as_str() == "null" {
                None
            } else {
                data.decode::<CancelData>()
                    .map_err(|_| CommandError::Invalid("data must be {\"room\": \"…\"}".into()))?
                    .room
            };
            let room = from_data
                .or_else(|| ctx.room.clone())
                .ok_or_else(|| CommandError::Invalid("name the stream's room".into()))?;
            // The pipeline authorized the frame's `room`; the room may have come from `data`.
            ctx.authorize(Action::Command {
                name: STREAM_CANCEL,
                room: Some(&room),
            })?;
            if !ctx.is_member(&room) {
                return Err(CommandError::NotJoined);
            }
            if !ctx.hub.cancel_stream(&room) {
                return Err(CommandError::NotFound(
                    "no stream is running in this room".into(),
                ));
            }
            tracing::debug!(%room, session = %ctx.session.id, "stream cancelled by a client");
            Ok(Payload::null())
        })
    }
}
