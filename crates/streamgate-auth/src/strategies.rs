//! Custom authenticators from closures, and the combinator that routes a credential to the
//! configured strategies.

use std::{fmt, future::Future, sync::Arc};

use serde::{Deserialize, Serialize};
use streamgate_core::{AuthError, Authenticator, BoxFuture, Credentials, Principal};

/// An [`Authenticator`] from an async closure, for teams with their own session store.
///
/// ```
/// use streamgate_auth::FnAuthenticator;
/// use streamgate_core::{AuthError, Authenticator, Credentials, Principal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let auth = FnAuthenticator::new(|credentials: Credentials| async move {
///     match credentials.token.as_deref() {
///         Some("session-1") => Ok(Principal::user("u1").with_tenant("acme")),
///         _ => Err(AuthError::Invalid),
///     }
/// });
/// assert!(auth.authenticate(&Credentials::bearer("session-1")).await.is_ok());
/// assert!(auth.authenticate(&Credentials::bearer("other")).await.is_err());
/// # }
/// ```
pub struct FnAuthenticator<F> {
    f: F,
}

impl<F> fmt::Debug for FnAuthenticator<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAuthenticator").finish_non_exhaustive()
    }
}

impl<F, Fut> FnAuthenticator<F>
where
    F: Fn(Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send + 'static,
{
    /// Wraps `f`; it gets a copy of the credentials.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F, Fut> Authenticator for FnAuthenticator<F>
where
    F: Fn(Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send + 'static,
{
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin((self.f)(credentials.clone()))
    }
}

/// One way of authenticating, as named in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// JWTs: tried only for tokens shaped like one (three dot-separated base64url parts).
    Jwt,
    /// API keys: tried only for tokens not shaped like a JWT.
    ApiKey,
    /// The custom authenticator: tried for any token.
    Custom,
}

/// Whether `token` has the shape of a compact JWS: three dot-separated base64url parts, the
/// first two not empty.
///
/// ```
/// assert!(streamgate_auth::looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.e30.c2ln"));
/// assert!(!streamgate_auth::looks_like_jwt("sk_live_123"));
/// ```
#[must_use]
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None)
            if !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s)
    )
}

/// Tries the configured strategies in order and admits the first that accepts.
///
/// A strategy that does not apply to the token's shape is skipped (see [`Strategy`]). When
/// every applicable strategy refuses, the answer is [`AuthError::Expired`] if one of them said
/// so, else [`AuthError::Invalid`]. Without credentials: [`AuthError::Missing`] when
/// [`required`](Strategies::required) (the default), an anonymous guest otherwise.
///
/// ```
/// use streamgate_auth::{ApiKey, ApiKeys, JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey, Strategies};
/// use streamgate_core::{Authenticator, Credentials};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let jwt = JwtAuthenticator::new(JwtConfig::new(JwtAlgorithm::HS256, JwtKey::Secret("s".repeat(32))))?;
/// let keys = ApiKeys::new().with_key(ApiKey::from_hash("etl", &ApiKeys::hash("sk_1"))?);
/// let auth = Strategies::new().jwt(jwt).api_keys(keys).required(false);
/// assert_eq!(auth.authenticate(&Credentials::bearer("sk_1")).await?.user.as_deref(), Some("etl"));
/// assert!(auth.authenticate(&Credentials::none()).await?.is_anonymous());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Strategies {
    jwt: Option<Arc<dyn Authenticator>>,
    api_keys: Option<Arc<dyn Authenticator>>,
    custom: Option<Arc<dyn Authenticator>>,
    order: Vec<Strategy>,
    optional: bool,
}

impl fmt::Debug for Strategies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Strategies")
            .field("order", &self.order)
            .field("required", &!self.optional)
            .finish_non_exhaustive()
    }
}

impl Strategies {
    /// No strategy yet; credentials required.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, strategy: Strategy) -> Self {
        if !self.order.contains(&strategy) {
            self.order.push(strategy);
        }
        self
    }

    /// The JWT strategy (any [`Authenticator`]; normally a
    /// [`JwtAuthenticator`](crate::JwtAuthenticator)), appended to the order.
    #[must_use]
    pub fn jwt(mut self, authenticator: impl Authenticator) -> Self {
        self.jwt = Some(Arc::new(authenticator));
        self.add(Strategy::Jwt)
    }

    /// The API key strategy (normally [`ApiKeys`](crate::ApiKeys)), appended to the order.
    #[must_use]
    pub fn api_keys(mut self, authenticator: impl Authenticator) -> Self {
        self.api_keys = Some(Arc::new(authenticator));
        self.add(Strategy::ApiKey)
    }

    /// The custom strategy (for example a [`FnAuthenticator`]), appended to the order.
    #[must_use]
    pub fn custom(mut self, authenticator: impl Authenticator) -> Self {
        self.custom = Some(Arc::new(authenticator));
        self.add(Strategy::Custom)
    }

    /// Replaces the order; strategies not configured are skipped.
    #[must_use]
    pub fn order(mut self, order: impl IntoIterator<Item = Strategy>) -> Self {
        self.order.clear();
        order.into_iter().fold(self, Self::add)
    }

    /// Whether credentials are required (default `true`); when not, a connection without any
    /// is an anonymous guest.
    #[must_use]
    pub fn required(mut self, required: bool) -> Self {
        self.optional = !required;
        self
    }

    fn applicable(&self, token: &str) -> impl Iterator<Item = &Arc<dyn Authenticator>> {
        let jwt = looks_like_jwt(token);
        self.order.iter().filter_map(move |s| match s {
            Strategy::Jwt if jwt => self.jwt.as_ref(),
            Strategy::ApiKey if !jwt => self.api_keys.as_ref(),
            Strategy::Custom => self.custom.as_ref(),
            Strategy::Jwt | Strategy::ApiKey => None,
        })
    }
}

impl Authenticator for Strategies {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            let token = match credentials.token.as_deref() {
                None | Some("") if self.optional => return Ok(Principal::anonymous()),
                None | Some("") => return Err(AuthError::Missing),
                Some(token) => token,
            };
            let mut error = AuthError::Invalid;
            for strategy in self.applicable(token) {
                match strategy.authenticate(credentials).await {
                    Ok(principal) => return Ok(principal),
                    Err(AuthError::Expired) => error = AuthError::Expired,
                    Err(_) => {}
                }
            }
            Err(error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(result: Result<Principal, AuthError>) -> impl Authenticator {
        FnAuthenticator::new(move |_| std::future::ready(result.clone()))
    }

    #[tokio::test]
    async fn tokens_go_to_the_strategies_their_shape_fits() {
        let auth = Strategies::new()
            .custom(fixed(Err(AuthError::Invalid)))
            .jwt(fixed(Ok(Principal::user("jwt"))))
            .api_keys(fixed(Ok(Principal::user("key"))));
        let user = |token: &'static str| {
            let auth = auth.clone();
            async move {
                auth.authenticate(&Credentials::bearer(token))
                    .await
                    .map(|p| p.user)
            }
        };
        assert_eq!(user("aaa.bbb.ccc").await, Ok(Some("jwt".into())));
        assert_eq!(user("sk_123").await, Ok(Some("key".into())));
        assert_eq!(user("").await, Err(AuthError::Missing));
        let anonymous = auth
            .required(false)
            .authenticate(&Credentials::none())
            .await;
        assert_eq!(anonymous.map(|p| p.is_anonymous()), Ok(true));
    }

    #[tokio::test]
    async fn expired_wins_over_invalid_and_nothing_applicable_is_invalid() {
        let auth = Strategies::new()
            .jwt(fixed(Err(AuthError::Expired)))
            .custom(fixed(Err(AuthError::Invalid)));
        let expired = auth.authenticate(&Credentials::bearer("a.b.c")).await;
        assert_eq!(expired.err(), Some(AuthError::Expired));
        let only_jwt = Strategies::new().jwt(fixed(Ok(Principal::user("u"))));
        let key = only_jwt.authenticate(&Credentials::bearer("sk_1")).await;
        assert_eq!(key.err(), Some(AuthError::Invalid));
        let reordered = Strategies::new()
            .jwt(fixed(Err(AuthError::Invalid)))
            .custom(fixed(Ok(Principal::user("custom"))))
            .order([Strategy::Custom, Strategy::Jwt]);
        let p = reordered.authenticate(&Credentials::bearer("a.b.c")).await;
        assert_eq!(p.map(|p| p.user), Ok(Some("custom".into())));
    }
}
