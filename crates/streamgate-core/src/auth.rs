use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    time::{SystemTime, UNIX_EPOCH},
};

use streamgate_protocol::ErrorCode;

use crate::Principal;

/// A boxed, sendable future, as returned by the object-safe async traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a client presented at the handshake (or in a `refresh`).
///
/// ```
/// use streamgate_core::Credentials;
///
/// let c = Credentials::bearer("t1");
/// assert_eq!(c.token.as_deref(), Some("t1"));
/// ```
#[derive(Clone, Default)]
pub struct Credentials {
    /// The bearer token, from a header, a query parameter, a cookie or an `auth` frame.
    pub token: Option<String>,
    /// The client's address, when the transport knows it.
    pub remote_addr: Option<SocketAddr>,
}

/// Never prints the token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl Credentials {
    /// Credentials with a bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            remote_addr: None,
        }
    }

    /// No credentials at all.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }
}

/// Why authentication failed. The message never says which part of a credential was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials, and anonymous access is off.
    #[error("credentials required")]
    Missing,
    /// The credentials are not valid.
    #[error("invalid credentials")]
    Invalid,
    /// The credentials were valid but have expired.
    #[error("credentials expired")]
    Expired,
}

impl AuthError {
    /// The protocol code for this failure.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing | Self::Invalid => ErrorCode::AuthFailed,
            Self::Expired => ErrorCode::TokenExpired,
        }
    }
}

/// Turns credentials into a [`Principal`]. Transports call it once per connection (and on
/// `refresh`); it must not block the runtime.
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `credentials`.
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

/// A fixed token → principal table, for development and tests. Anonymous access (no token at
/// all) is refused unless [`StaticTokens::allow_anonymous`] is called.
///
/// ```
/// use streamgate_core::{Authenticator, Credentials, Principal, StaticTokens};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let auth = StaticTokens::new().with_token("t1", Principal::user("u1"));
/// assert!(auth.authenticate(&Credentials::bearer("t1")).await.is_ok());
/// assert!(auth.authenticate(&Credentials::bearer("nope")).await.is_err());
/// assert!(auth.authenticate(&Credentials::none()).await.is_err());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    tokens: HashMap<String, Principal>,
    anonymous: bool,
}

impl StaticTokens {
    /// An empty table that admits nobody.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>, principal: Principal) -> Self {
        self.tokens.insert(token.into(), principal);
        self
    }

    /// Admits connections without any token as [`Principal::anonymous`].
    #[must_use]
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator for StaticTokens {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let result = match credentials.token.as_deref() {
            None | Some("") if self.anonymous => Ok(Principal::anonymous()),
            None | Some("") => Err(AuthError::Missing),
            Some(token) => match self.tokens.get(token) {
                Some(p) if p.expires_at.is_some_and(|exp| exp <= now_secs()) => {
                    Err(AuthError::Expired)
                }
                Some(p) => Ok(p.clone()),
                None => Err(AuthError::Invalid),
            },
        };
        Box::pin(std::future::ready(result))
    }
}
