//! The rate limiting seam of the inbound pipeline: every client command is checked here after
//! it was decoded and validated, and before it is authorized and handled.

use std::{net::IpAddr, time::Duration};

use streamgate_protocol::{Command, ErrorBody, ErrorCode};

use crate::{Principal, SessionId};

/// Whose budget a command is charged to.
///
/// ```
/// use streamgate_core::{Principal, RateSubject, SessionId};
///
/// let user = Principal::user("u1");
/// let session: SessionId = "s7".parse()?;
/// assert_eq!(
///     RateSubject::of(&user, session),
///     RateSubject::User { tenant: None, user: "u1" }
/// );
/// assert_eq!(RateSubject::of(&Principal::anonymous(), session), RateSubject::Session(session));
/// # Ok::<(), streamgate_core::InvalidSessionId>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateSubject<'a> {
    /// An identified user: one budget across all of the user's sessions (and nodes, for a
    /// shared limiter). The tenant is part of the key so that equal user ids of two tenants
    /// never share a budget.
    User {
        /// The user's tenant, if any.
        tenant: Option<&'a str>,
        /// The user id.
        user: &'a str,
    },
    /// An anonymous session: it has no user to charge, so the session itself is the key.
    Session(SessionId),
}

impl<'a> RateSubject<'a> {
    /// The user of `principal`, or `session` when the principal has no user.
    #[must_use]
    pub fn of(principal: &'a Principal, session: SessionId) -> Self {
        match &principal.user {
            Some(user) => Self::User {
                tenant: principal.tenant.as_deref(),
                user,
            },
            None => Self::Session(session),
        }
    }
}

/// What a [`RateLimiter`] is asked about: who, and which kind of command.
///
/// ```
/// use streamgate_core::{RateKey, RateSubject};
///
/// let key = RateKey::new(RateSubject::User { tenant: None, user: "u1" }, "message.send");
/// assert_eq!(key.kind, "message.send");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateKey<'a> {
    /// Whose budget.
    pub subject: RateSubject<'a>,
    /// The command kind; see [`command_kind`].
    pub kind: &'a str,
}

impl<'a> RateKey<'a> {
    /// A key for `subject` and `kind`.
    #[must_use]
    pub fn new(subject: RateSubject<'a>, kind: &'a str) -> Self {
        Self { subject, kind }
    }
}

/// The rate limiting kind of a command: an application command's `name` (`message.send`),
/// `typing` for both `typing_start` and `typing_stop`, otherwise the command's wire name
/// (`join`, `leave`, `ack`, `ping`, `refresh`, `auth`).
///
/// ```
/// use streamgate_core::command_kind;
/// use streamgate_protocol::{Command, Typing, UserCommand, Payload};
///
/// let room = "conversation:1".parse()?;
/// assert_eq!(command_kind(&Command::TypingStop(Typing { room })), "typing");
/// let send = Command::Command(UserCommand {
///     name: "message.send".into(),
///     room: None,
///     data: Payload::null(),
/// });
/// assert_eq!(command_kind(&send), "message.send");
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[must_use]
pub fn command_kind(command: &Command) -> &str {
    match command {
        Command::Command(cmd) => &cmd.name,
        Command::TypingStart(_) | Command::TypingStop(_) => "typing",
        other => other.name(),
    }
}

/// A `RATE_LIMITED` error that tells the client to wait `wait`, rounded up to whole
/// milliseconds (retrying after a truncated wait would be refused again).
pub(crate) fn rate_limited(wait: Duration, message: &str) -> ErrorBody {
    let ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    ErrorBody::new(ErrorCode::RateLimited, message).with_retry_after_ms(ms.max(1))
}

/// Decides whether a command may go through now. A refusal answers the request with
/// `RATE_LIMITED` and `retry_after_ms`; the session stays open.
///
/// Implementations must be cheap and must not block: `check` runs on the session's reader
/// for every inbound command. `streamgate-ratelimit` provides a keyed GCRA implementation.
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::{RateKey, RateLimiter};
///
/// /// Refuses every `typing` command, for a minute.
/// struct NoTyping;
///
/// impl RateLimiter for NoTyping {
///     fn check(&self, key: &RateKey<'_>) -> Result<(), Duration> {
///         if key.kind == "typing" { Err(Duration::from_secs(60)) } else { Ok(()) }
///     }
/// }
/// ```
pub trait RateLimiter: Send + Sync + 'static {
    /// `Ok(())` to let the command through (and count it), or how long to wait before
    /// retrying.
    fn check(&self, key: &RateKey<'_>) -> Result<(), Duration>;

    /// `Ok(())` to let a new connection from `address` go on to authentication, or how long
    /// to wait. Transports ask before authenticating; the default lets every connection in.
    fn check_connect(&self, address: IpAddr) -> Result<(), Duration> {
        let _ = address;
        Ok(())
    }

    /// Forgets idle keys so memory stays bounded. The hub calls it from its sweeper every
    /// [`HubConfig::sweep_interval`](crate::HubConfig::sweep_interval); the default does
    /// nothing.
    fn sweep(&self) {}
}

/// The default [`RateLimiter`]: lets everything through.
///
/// ```
/// use streamgate_core::{RateKey, RateLimiter, RateSubject, Unlimited};
///
/// let key = RateKey::new(RateSubject::User { tenant: None, user: "u1" }, "message.send");
/// assert!(Unlimited.check(&key).is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl RateLimiter for Unlimited {
    fn check(&self, _key: &RateKey<'_>) -> Result<(), Duration> {
        Ok(())
    }
}
