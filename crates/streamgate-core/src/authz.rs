use streamgate_protocol::{ErrorCode, RoomId};

use crate::Principal;

/// Something a principal wants to do.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Action<'a> {
    /// Join (subscribe to) a room.
    Join(&'a RoomId),
    /// Publish from a client into a room (typing indicators, later client publications).
    Publish(&'a RoomId),
    /// Send an application command.
    Command {
        /// The command's name.
        name: &'a str,
        /// The room it concerns.
        room: Option<&'a RoomId>,
    },
}

/// Decides whether a principal may perform an [`Action`]. A refusal answers the request with
/// the returned code (`PERMISSION_DENIED`, `ROOM_ACCESS_DENIED`) and keeps the session open.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` to allow, or the error code to refuse with.
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode>;
}

/// The default policy until a tenant/role policy is configured: every authenticated principal
/// may join any room and send commands; anonymous guests may only join (read).
///
/// ```
/// use streamgate_core::{Action, Authorizer, OpenPolicy, Principal};
///
/// let room = "execution:1".parse()?;
/// assert!(OpenPolicy.authorize(&Principal::anonymous(), Action::Join(&room)).is_ok());
/// assert!(OpenPolicy.authorize(&Principal::anonymous(), Action::Publish(&room)).is_err());
/// assert!(OpenPolicy.authorize(&Principal::user("u1"), Action::Publish(&room)).is_ok());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenPolicy;

impl Authorizer for OpenPolicy {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        match action {
            Action::Publish(_) | Action::Command { .. } if principal.is_anonymous() => {
                Err(ErrorCode::PermissionDenied)
            }
            _ => Ok(()),
        }
    }
}
