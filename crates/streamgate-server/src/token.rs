//! Development JWTs: what `streamgate-server token` and the demo page hand out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use streamgate::JwtAlgorithm;

use crate::config::JwtSection;

/// Who a minted token speaks for.
///
/// ```
/// use std::time::Duration;
/// use streamgate_server::token::{Minter, TokenSpec};
///
/// let minter = Minter::hs256(b"a development secret of 32 bytes!");
/// let spec = TokenSpec::user("alice").tenant("acme").roles(["admin"]);
/// let jwt = minter.mint(&spec, Duration::from_secs(3600))?;
/// assert_eq!(jwt.split('.').count(), 3);
/// # Ok::<(), jsonwebtoken::errors::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSpec {
    /// `sub`.
    pub user: String,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `rooms`: the room allow-list (ids or `kind:prefix*` patterns); empty means none.
    pub rooms: Vec<String>,
    /// `kind` (`guest`, `member`, `supervisor`, `service`).
    pub kind: Option<String>,
}

impl TokenSpec {
    /// A token for `user`.
    #[must_use]
    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            ..Self::default()
        }
    }

    /// Sets the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Limits the token to these rooms.
    #[must_use]
    pub fn rooms<I: IntoIterator<Item = S>, S: Into<String>>(mut self, rooms: I) -> Self {
        self.rooms = rooms.into_iter().map(Into::into).collect();
        self
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    permissions: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rooms: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs tokens with an HMAC key that the server also verifies with.
#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter for a plain HS256 secret (the development secret).
    #[must_use]
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            algorithm: jsonwebtoken::Algorithm::HS256,
            issuer: None,
            audience: None,
        }
    }

    /// A minter for the configured JWT verification, when it uses an HMAC secret.
    #[must_use]
    pub fn from_config(jwt: &JwtSection) -> Option<Self> {
        let algorithm = match jwt.algorithm {
            JwtAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            JwtAlgorithm::HS384 => jsonwebtoken::Algorithm::HS384,
            JwtAlgorithm::HS512 => jsonwebtoken::Algorithm::HS512,
            _ => return None,
        };
        Some(Self {
            key: jwt.signing_key()?,
            algorithm,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
        })
    }

    /// A signed token for `spec`, valid for `ttl`.
    pub fn mint(
        &self,
        spec: &TokenSpec,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: &spec.user,
            iat: now,
            exp: now.saturating_add(ttl.as_secs().max(1)),
            tenant: spec.tenant.as_deref(),
            roles: &spec.roles,
            permissions: &spec.permissions,
            rooms: &spec.rooms,
            kind: spec.kind.as_deref(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
    }
}
