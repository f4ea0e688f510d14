//! The built-in `publish` command: clients publish into rooms of the kinds configured with
//! `client_publish = true` (chat rooms, collaborative sessions), over their own connection,
//! instead of through a backend and the HTTP API.
//!
//! ```json
//! {"type":"command","id":7,"name":"publish","room":"conversation:acme.42","data":{"text":"hi"}}
//! ```
//!
//! The room must be of such a kind (`PERMISSION_DENIED` otherwise) and the authorization policy
//! must allow [`Action::Publish`] for it (tenant rules apply). The sender does not have to be a
//! member. The command's `data` becomes a publication with event [`EVENT`] in the room, kept
//! in its history like any other, and the `reply` carries its `{"offset", "epoch"}`. Commands are
//! rate limited per user like every other command (`rate_limits.commands.publish`).

use std::collections::BTreeSet;

use streamgate_core::{Action, BoxFuture, CommandContext, CommandError, CommandHandler, Publish};
use streamgate_protocol::{ErrorCode, Payload};

/// The command's name.
pub const COMMAND: &str = "publish";

/// The event name of the publications it makes.
pub const EVENT: &str = "message";

/// The `publish` command handler, for the room kinds that allow client publications.
///
/// ```
/// use streamgate_server::client_publish::ClientPublish;
///
/// let handler = ClientPublish::new(["conversation".to_owned()]);
/// assert!(handler.allows("conversation"));
/// assert!(!handler.allows("execution"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientPublish {
    kinds: BTreeSet<String>,
}

impl ClientPublish {
    /// A handler for rooms of these kinds.
    pub fn new(kinds: impl IntoIterator<Item = String>) -> Self {
        Self {
            kinds: kinds.into_iter().collect(),
        }
    }

    /// Whether no room kind takes client publications.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Whether rooms of `kind` take client publications.
    #[must_use]
    pub fn allows(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }
}

impl CommandHandler for ClientPublish {
    fn call(
        &self,
        ctx: CommandContext,
        data: Payload,
    ) -> BoxFuture<'_, Result<Payload, CommandError>> {
        Box::pin(async move {
            let Some(room) = ctx.room() else {
                return Err(CommandError::Invalid(
                    "`publish` needs the `room` to publish into".into(),
                ));
            };
            if !self.allows(room.kind()) {
                return Err(CommandError::Refused {
                    code: ErrorCode::PermissionDenied,
                    message: format!(
                        "rooms of kind `{}` do not take client publications",
                        room.kind()
                    ),
                });
            }
            ctx.authorize(Action::Publish(room))?;
            let outcome = ctx
                .hub()
                .publish(room, Publish::new(EVENT, data))
                .map_err(|e| CommandError::Refused {
                    code: e.code(),
                    message: e.to_string(),
                })?;
            Payload::json(&serde_json::json!({
                "offset": outcome.position.offset,
                "epoch": outcome.position.epoch,
            }))
            .map_err(|e| CommandError::Internal(e.to_string()))
        })
    }
}
