//! JSON Web Tokens: configuration, key loading (secret, PEM, JWKS) and verification.

use std::{fmt, path::PathBuf, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{JwkSet, PublicKeyUse},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use streamgate_core::{AuthError, Authenticator, BoxFuture, Credentials, Principal, PrincipalKind};

use crate::{AuthConfigError, ClaimNames};

/// Default longest token accepted, checked before any parsing: 8 KiB.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock leeway for `exp` and `nbf`: 30 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The one signature algorithm a [`JwtAuthenticator`] accepts. It comes from configuration,
/// never from the token's header: a token whose `alg` differs (including `none`) is refused.
///
/// ```
/// use streamgate_auth::JwtAlgorithm;
///
/// let alg: JwtAlgorithm = serde_json::from_str(r#""RS256""#)?;
/// assert_eq!(alg, JwtAlgorithm::RS256);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[allow(clippy::upper_case_acronyms)] // the names of RFC 7518
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, shared secret.
    HS256,
    /// HMAC with SHA-384, shared secret.
    HS384,
    /// HMAC with SHA-512, shared secret.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::HS384 => Algorithm::HS384,
            Self::HS512 => Algorithm::HS512,
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// Where the verification key comes from. In configuration files it is written as one of
/// `{"secret": "…"}`, `{"base64_secret": "…"}`, `{"pem_file": "path"}`,
/// `{"jwks_file": "path"}`.
///
/// `Debug` never prints a secret.
///
/// ```
/// use streamgate_auth::JwtKey;
///
/// let key: JwtKey = serde_json::from_str(r#"{"jwks_file": "/etc/streamgate/jwks.json"}"#)?;
/// assert!(matches!(key, JwtKey::JwksFile(_)));
/// assert_eq!(format!("{:?}", JwtKey::Secret("s3cret".into())), "Secret(<redacted>)");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JwtKey {
    /// An HMAC secret given as text (its UTF-8 bytes are the key).
    Secret(String),
    /// An HMAC secret as raw bytes.
    #[serde(skip)]
    SecretBytes(Vec<u8>),
    /// An HMAC secret in standard base64.
    Base64Secret(String),
    /// A PEM public key (RSA, EC P-256 or Ed25519) read from a file when the authenticator is
    /// built.
    PemFile(PathBuf),
    /// A PEM public key held in memory.
    #[serde(skip)]
    Pem(Vec<u8>),
    /// A JWKS document (`{"keys": […]}`) read from a file when the authenticator is built.
    JwksFile(PathBuf),
    /// A JWKS document held in memory.
    Jwks(String),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(<redacted>)"),
            Self::SecretBytes(_) => f.write_str("SecretBytes(<redacted>)"),
            Self::Base64Secret(_) => f.write_str("Base64Secret(<redacted>)"),
            Self::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Self::Pem(_) => f.write_str("Pem(..)"),
            Self::JwksFile(p) => f.debug_tuple("JwksFile").field(p).finish(),
            Self::Jwks(_) => f.write_str("Jwks(..)"),
        }
    }
}

/// Configuration of a [`JwtAuthenticator`]; see the crate documentation for what is checked.
///
/// ```
/// use std::time::Duration;
/// use streamgate_auth::{ClaimNames, JwtAlgorithm, JwtConfig, JwtKey};
///
/// let config = JwtConfig::new(JwtAlgorithm::RS256, JwtKey::PemFile("jwt.pub.pem".into()))
///     .issuer("https://id.example.com")
///     .audience("streamgate")
///     .leeway(Duration::from_secs(10))
///     .claims(ClaimNames::default().tenant("org_id"));
/// assert_eq!(config.max_token_len, 8 * 1024);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The only algorithm accepted.
    pub algorithm: JwtAlgorithm,
    /// The verification key or key set.
    pub key: JwtKey,
    /// Accepted issuers; when not empty, `iss` is required and must be one of them.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted audiences; when not empty, `aud` is required and must contain one of them.
    /// When empty, a token that carries an `aud` is refused (RFC 7519 §4.1.3): configure the
    /// audience your identity provider issues.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds (default 30).
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Longest token accepted, in bytes, checked before parsing (default 8 KiB).
    #[serde(default = "default_max_token_len")]
    pub max_token_len: usize,
    /// Claim names.
    #[serde(default)]
    pub claims: ClaimNames,
    /// The kind of a principal whose token has no kind claim (default `member`).
    #[serde(default)]
    pub default_kind: PrincipalKind,
    /// Refuse tokens without a tenant claim (default `false`).
    #[serde(default)]
    pub require_tenant: bool,
}

fn default_leeway_secs() -> u64 {
    DEFAULT_LEEWAY.as_secs()
}

fn default_max_token_len() -> usize {
    DEFAULT_MAX_TOKEN_LEN
}

impl JwtConfig {
    /// A configuration accepting `algorithm` with `key`, and defaults for everything else.
    #[must_use]
    pub fn new(algorithm: JwtAlgorithm, key: JwtKey) -> Self {
        Self {
            algorithm,
            key,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: default_leeway_secs(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            claims: ClaimNames::default(),
            default_kind: PrincipalKind::Member,
            require_tenant: false,
        }
    }

    /// Adds an accepted issuer (`iss`).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Adds an accepted audience (`aud`).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Sets the clock leeway (whole seconds).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    /// Sets the longest token accepted, in bytes.
    #[must_use]
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Sets the claim names.
    #[must_use]
    pub fn claims(mut self, claims: ClaimNames) -> Self {
        self.claims = claims;
        self
    }

    /// Sets the kind of principals whose token has no kind claim.
    #[must_use]
    pub fn default_kind(mut self, kind: PrincipalKind) -> Self {
        self.default_kind = kind;
        self
    }

    /// Refuses tokens without a tenant.
    #[must_use]
    pub fn require_tenant(mut self, on: bool) -> Self {
        self.require_tenant = on;
        self
    }
}

enum Keys {
    /// One key: the token's `kid` is not consulted.
    Single(DecodingKey),
    /// A JWKS: keys usable with the configured algorithm, by `kid`.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// Verifies JWTs and maps their claims to a [`Principal`].
///
/// Checked, in order: the length (before any parsing); the header parses and names the
/// configured algorithm; the key (by `kid` for a JWKS); the signature; `exp` (required), `nbf`
/// (when present), `iss` and `aud` (required when configured) with the configured leeway; the
/// user claim (required, not empty) and the shapes of the other mapped claims. An expired token
/// is refused with [`AuthError::Expired`] (`TOKEN_EXPIRED`), anything else with
/// [`AuthError::Invalid`] (`AUTH_FAILED`); the reason is logged at debug level only.
///
/// ```
/// use streamgate_auth::{JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey};
/// use streamgate_core::AuthError;
///
/// let auth = JwtAuthenticator::new(JwtConfig::new(
///     JwtAlgorithm::HS256,
///     JwtKey::Secret("a-long-random-secret".into()),
/// ))?;
/// assert_eq!(auth.verify("not.a.jwt").err(), Some(AuthError::Invalid));
/// # Ok::<(), streamgate_auth::AuthConfigError>(())
/// ```
pub struct JwtAuthenticator {
    keys: Keys,
    validation: Validation,
    config: JwtConfig,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Io {
        path: path.clone(),
        source,
    })
}

fn pem_key(algorithm: JwtAlgorithm, pem: &[u8]) -> Result<DecodingKey, AuthConfigError> {
    let key = match algorithm {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => {
            return Err(AuthConfigError::Key(
                "a PEM key needs RS256, ES256 or EdDSA; HMAC takes a secret".into(),
            ));
        }
    };
    key.map_err(|e| AuthConfigError::Key(format!("PEM for {algorithm:?}: {e}")))
}

fn jwks_keys(
    algorithm: JwtAlgorithm,
    json: &[u8],
) -> Result<Vec<(Option<String>, DecodingKey)>, AuthConfigError> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| AuthConfigError::Jwks(e.to_string()))?;
    let alg = algorithm.jwt();
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        // A set may hold keys for other algorithms or for encryption: those are not ours.
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{algorithm:?}"))
        {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            tracing::debug!(kid = ?kid, "skipping an unsupported JWK");
            continue;
        };
        if key.family() != alg.family() {
            continue;
        }
        if kid.is_some() && keys.iter().any(|(k, _)| *k == kid) {
            return Err(AuthConfigError::Jwks(format!("duplicate kid {kid:?}")));
        }
        keys.push((kid, key));
    }
    if keys.is_empty() {
        return Err(AuthConfigError::Jwks(format!(
            "no key usable with {algorithm:?}"
        )));
    }
    Ok(keys)
}

impl JwtAuthenticator {
    /// Loads the key(s) and checks the configuration.
    pub fn new(config: JwtConfig) -> Result<Self, AuthConfigError> {
        let algorithm = config.algorithm;
        let secret = |bytes: &[u8]| {
            if !algorithm.is_hmac() {
                return Err(AuthConfigError::Key(format!(
                    "{algorithm:?} needs a public key, not a secret"
                )));
            }
            if bytes.is_empty() {
                return Err(AuthConfigError::Key("empty secret".into()));
            }
            Ok(DecodingKey::from_secret(bytes))
        };
        let keys = match &config.key {
            JwtKey::Secret(s) => Keys::Single(secret(s.as_bytes())?),
            JwtKey::SecretBytes(b) => Keys::Single(secret(b)?),
            JwtKey::Base64Secret(s) => {
                let key = DecodingKey::from_base64_secret(s)
                    .map_err(|_| AuthConfigError::Key("base64_secret is not base64".into()))?;
                secret(key.try_get_as_bytes().unwrap_or_default())?;
                Keys::Single(key)
            }
            JwtKey::PemFile(path) => Keys::Single(pem_key(algorithm, &read(path)?)?),
            JwtKey::Pem(pem) => Keys::Single(pem_key(algorithm, pem)?),
            JwtKey::JwksFile(path) => Keys::Set(jwks_keys(algorithm, &read(path)?)?),
            JwtKey::Jwks(json) => Keys::Set(jwks_keys(algorithm, json.as_bytes())?),
        };
        if config.max_token_len == 0 {
            return Err(AuthConfigError::Invalid(
                "max_token_len must be positive".into(),
            ));
        }
        if config.claims.user.is_empty() {
            return Err(AuthConfigError::Invalid("claims.user is empty".into()));
        }
        let mut validation = Validation::new(algorithm.jwt());
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let mut required = vec!["exp"];
        if !config.issuers.is_empty() {
            validation.set_issuer(&config.issuers);
            required.push("iss");
        }
        if !config.audiences.is_empty() {
            validation.set_audience(&config.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            keys,
            validation,
            config,
        })
    }

    /// Verifies `token` and maps its claims; the same as
    /// [`Authenticator::authenticate`] with a bearer token, synchronously.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.check(token).map_err(|(error, reason)| {
            tracing::debug!(reason, "JWT refused");
            error
        })
    }

    fn check(&self, token: &str) -> Result<Principal, (AuthError, String)> {
        let invalid = |reason: String| (AuthError::Invalid, reason);
        if token.len() > self.config.max_token_len {
            return Err(invalid(format!(
                "token longer than {} bytes",
                self.config.max_token_len
            )));
        }
        let header = decode_header(token).map_err(|e| invalid(format!("header: {e}")))?;
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::Set(keys) => match &header.kid {
                Some(kid) => keys
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some(kid.as_str()))
                    .map(|(_, key)| key)
                    .ok_or_else(|| invalid("unknown kid".into()))?,
                None => match keys.as_slice() {
                    [(_, key)] => key,
                    _ => return Err(invalid("no kid, and the JWKS holds several keys".into())),
                },
            },
        };
        let data = decode::<Map<String, Value>>(token, key, &self.validation).map_err(|e| {
            let error = match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            };
            (error, e.to_string())
        })?;
        self.config
            .claims
            .principal(
                &data.claims,
                self.config.default_kind,
                self.config.require_tenant,
            )
            .map_err(|reason| invalid(reason.into()))
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let result = match credentials.token.as_deref() {
            None | Some("") => Err(AuthError::Missing),
            Some(token) => self.verify(token),
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    /// The test-only keys of the workspace's e2e fixtures.
    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/keys/");
        std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn rs256() -> JwtAuthenticator {
        JwtAuthenticator::new(JwtConfig::new(
            JwtAlgorithm::RS256,
            JwtKey::Pem(fixture("rsa_public.pem")),
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn reason(auth: &JwtAuthenticator, token: &str) -> String {
        match auth.check(token) {
            Ok(p) => panic!("accepted as {p:?}"),
            Err((_, reason)) => reason,
        }
    }

    fn claims() -> Value {
        json!({"sub": "u1", "exp": get_current_timestamp() + 60})
    }

    #[test]
    fn the_algorithm_comes_from_configuration_not_from_the_header() {
        let auth = rs256();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(&fixture("rsa_public.pem")),
        )
        .unwrap_or_default();
        assert!(reason(&auth, &confused).contains("InvalidAlgorithm"));
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(reason(&auth, none).starts_with("header"));
        let ok = encode(
            &Header::new(Algorithm::RS256),
            &claims(),
            &EncodingKey::from_rsa_pem(&fixture("rsa_private.pem"))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_default();
        assert_eq!(auth.verify(&ok).map(|p| p.user), Ok(Some("u1".into())));
    }

    #[test]
    fn the_length_is_checked_before_parsing() {
        let auth = rs256();
        let long = "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1);
        assert!(reason(&auth, &long).starts_with("token longer"));
    }

    #[test]
    fn keys_must_fit_the_algorithm() {
        let pem =
            |alg, file| JwtAuthenticator::new(JwtConfig::new(alg, JwtKey::Pem(fixture(file))));
        assert!(pem(JwtAlgorithm::HS256, "rsa_public.pem").is_err());
        assert!(pem(JwtAlgorithm::ES256, "rsa_public.pem").is_err());
        assert!(pem(JwtAlgorithm::EdDSA, "ec_public.pem").is_err());
        assert!(pem(JwtAlgorithm::ES256, "ec_public.pem").is_ok());
        assert!(pem(JwtAlgorithm::EdDSA, "ed25519_public.pem").is_ok());
        let secret = JwtAuthenticator::new(JwtConfig::new(
            JwtAlgorithm::RS256,
            JwtKey::Secret("s".into()),
        ));
        assert!(secret.is_err());
        let jwks = String::from_utf8(fixture("jwks.json")).unwrap_or_default();
        let only_ec =
            JwtAuthenticator::new(JwtConfig::new(JwtAlgorithm::EdDSA, JwtKey::Jwks(jwks)));
        assert!(matches!(only_ec, Err(AuthConfigError::Jwks(_))));
    }
}
