//! API keys for services and producers: SHA-256 hashes only, constant-time lookup, revocation.

use std::{fmt, sync::Arc};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use streamgate_core::{AuthError, Authenticator, BoxFuture, Credentials, Principal, PrincipalKind};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::AuthConfigError;

/// Longest API key accepted, in bytes, checked before hashing.
pub const MAX_API_KEY_LEN: usize = 1024;

/// One API key as configured: a name (the principal's user id), the SHA-256 hash of the key
/// (64 hexadecimal digits; the key itself is never stored), a tenant and scopes (the
/// principal's permissions).
///
/// ```
/// use streamgate_auth::{ApiKey, ApiKeys};
///
/// let key = ApiKey::from_hash("billing", &ApiKeys::hash("sk_live_123"))?
///     .tenant("acme")
///     .scopes(["publish"]);
/// assert_eq!(key.name, "billing");
/// # Ok::<(), streamgate_auth::AuthConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ApiKeyConfig", into = "ApiKeyConfig")]
#[non_exhaustive]
pub struct ApiKey {
    /// The key's name, unique in an [`ApiKeys`] table; it becomes the principal's user id.
    pub name: String,
    hash: [u8; 32],
    /// The tenant of the principal.
    pub tenant: Option<String>,
    /// Scopes, mapped to the principal's permissions.
    pub scopes: Vec<String>,
    /// A revoked key is refused.
    pub revoked: bool,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// The serialized form of an [`ApiKey`]: `{"name", "sha256", "tenant", "scopes", "revoked"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyConfig {
    name: String,
    sha256: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    revoked: bool,
}

impl TryFrom<ApiKeyConfig> for ApiKey {
    type Error = AuthConfigError;

    fn try_from(c: ApiKeyConfig) -> Result<Self, Self::Error> {
        let mut key = Self::from_hash(c.name, &c.sha256)?;
        key.tenant = c.tenant;
        key.scopes = c.scopes;
        key.revoked = c.revoked;
        Ok(key)
    }
}

impl From<ApiKey> for ApiKeyConfig {
    fn from(k: ApiKey) -> Self {
        Self {
            sha256: hex(&k.hash),
            name: k.name,
            tenant: k.tenant,
            scopes: k.scopes,
            revoked: k.revoked,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let value = digit(pair[0])? * 16 + digit(pair[1])?;
        *byte = u8::try_from(value).ok()?;
    }
    Some(out)
}

fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKey {
    /// A key named `name` whose SHA-256 hash is `sha256_hex` (see [`ApiKeys::hash`]).
    pub fn from_hash(name: impl Into<String>, sha256_hex: &str) -> Result<Self, AuthConfigError> {
        let name = name.into();
        let Some(hash) = unhex(sha256_hex.trim()) else {
            return Err(AuthConfigError::ApiKeyHash { name });
        };
        Ok(Self {
            name,
            hash,
            tenant: None,
            scopes: Vec::new(),
            revoked: false,
        })
    }

    /// Sets the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Marks the key revoked.
    #[must_use]
    pub fn revoked(mut self) -> Self {
        self.revoked = true;
        self
    }

    fn principal(&self) -> Principal {
        Principal {
            user: Some(self.name.clone()),
            tenant: self.tenant.clone(),
            kind: PrincipalKind::Service,
            roles: Vec::new(),
            permissions: self.scopes.clone(),
            expires_at: None,
        }
    }
}

/// An API key table, authenticating bearer tokens as [`PrincipalKind::Service`] principals.
///
/// Only SHA-256 hashes are held. A presented key is hashed and compared with **every**
/// configured hash in constant time, so timing reveals neither which key matched nor how much
/// of a hash did. Cloning shares the table: keep a clone to [`revoke`](ApiKeys::revoke) or
/// [`insert`](ApiKeys::insert) keys at run time, with effect on the next authentication.
///
/// ```
/// use streamgate_auth::{ApiKey, ApiKeys};
/// use streamgate_core::{AuthError, Authenticator, Credentials, PrincipalKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = ApiKeys::new()
///     .with_key(ApiKey::from_hash("billing", &ApiKeys::hash("sk_123"))?.tenant("acme"));
/// let handle = keys.clone();
/// let p = keys.authenticate(&Credentials::bearer("sk_123")).await?;
/// assert_eq!((p.user.as_deref(), p.kind), (Some("billing"), PrincipalKind::Service));
///
/// assert!(handle.revoke("billing"));
/// let refused = keys.authenticate(&Credentials::bearer("sk_123")).await;
/// assert_eq!(refused.err(), Some(AuthError::Invalid));
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<RwLock<Vec<ApiKey>>>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &*self.keys.read())
            .finish()
    }
}

impl ApiKeys {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A table of configured keys; names must be unique.
    pub fn from_keys(keys: impl IntoIterator<Item = ApiKey>) -> Result<Self, AuthConfigError> {
        let table = Self::new();
        for key in keys {
            if table.keys.read().iter().any(|k| k.name == key.name) {
                return Err(AuthConfigError::Invalid(format!(
                    "duplicate API key name {}",
                    key.name
                )));
            }
            table.insert(key);
        }
        Ok(table)
    }

    /// Adds a key (replacing a key of the same name).
    #[must_use]
    pub fn with_key(self, key: ApiKey) -> Self {
        self.insert(key);
        self
    }

    /// Adds a key at run time (replacing a key of the same name).
    pub fn insert(&self, key: ApiKey) {
        let mut keys = self.keys.write();
        keys.retain(|k| k.name != key.name);
        keys.push(key);
    }

    /// Revokes the key named `name`; `false` when there is none.
    pub fn revoke(&self, name: &str) -> bool {
        let mut keys = self.keys.write();
        keys.iter_mut()
            .filter(|k| k.name == name)
            .fold(false, |_, k| {
                k.revoked = true;
                true
            })
    }

    /// The SHA-256 hash of `key`, in lowercase hexadecimal: what configuration stores.
    ///
    /// ```
    /// use streamgate_auth::ApiKeys;
    ///
    /// assert_eq!(
    ///     ApiKeys::hash("abc"),
    ///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    /// );
    /// ```
    #[must_use]
    pub fn hash(key: &str) -> String {
        hex(&sha256(key))
    }

    /// Verifies a presented key synchronously.
    pub fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        if key.is_empty() || key.len() > MAX_API_KEY_LEN {
            tracing::debug!("API key refused: bad length");
            return Err(AuthError::Invalid);
        }
        let presented = sha256(key);
        let keys = self.keys.read();
        // Visit every key and select the match without branching on secret data.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, k) in keys.iter().enumerate() {
            let hit = k.hash.ct_eq(&presented);
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            index.conditional_assign(&i, hit);
            found |= hit;
        }
        if !bool::from(found) {
            tracing::debug!("API key refused: unknown key");
            return Err(AuthError::Invalid);
        }
        match keys.get(index as usize) {
            Some(k) if k.revoked => {
                tracing::debug!(key = %k.name, "API key refused: revoked");
                Err(AuthError::Invalid)
            }
            Some(k) => Ok(k.principal()),
            None => Err(AuthError::Invalid),
        }
    }
}

impl Authenticator for ApiKeys {
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
    use super::*;

    #[test]
    fn keys_round_trip_through_configuration() {
        let json = format!(
            r#"[{{"name":"a","sha256":"{}","tenant":"acme","scopes":["publish"]}},
                {{"name":"b","sha256":"{}","revoked":true}}]"#,
            ApiKeys::hash("ka"),
            ApiKeys::hash("kb").to_uppercase()
        );
        let keys: Vec<ApiKey> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(keys.len(), 2);
        let table = ApiKeys::from_keys(keys).map_err(|e| e.to_string());
        let Ok(table) = table else {
            panic!("{table:?}");
        };
        let p = table.verify("ka");
        assert_eq!(p.as_ref().map(|p| p.tenant.as_deref()), Ok(Some("acme")));
        assert_eq!(p.map(|p| p.permissions), Ok(vec!["publish".to_owned()]));
        assert_eq!(table.verify("kb"), Err(AuthError::Invalid));
        assert_eq!(table.verify("kc"), Err(AuthError::Invalid));
        assert_eq!(table.verify(&"k".repeat(2000)), Err(AuthError::Invalid));
    }

    #[test]
    fn bad_hashes_and_duplicates_are_configuration_errors() {
        assert!(ApiKey::from_hash("a", "abc").is_err());
        assert!(ApiKey::from_hash("a", &"zz".repeat(32)).is_err());
        let k = ApiKey::from_hash("a", &ApiKeys::hash("x"));
        let Ok(k) = k else { panic!("{k:?}") };
        assert!(ApiKeys::from_keys([k.clone(), k]).is_err());
    }

    #[test]
    fn revoke_and_insert_take_effect_through_any_clone() {
        let Ok(key) = ApiKey::from_hash("svc", &ApiKeys::hash("secret")) else {
            panic!()
        };
        let keys = ApiKeys::new().with_key(key.clone());
        let handle = keys.clone();
        assert!(keys.verify("secret").is_ok());
        assert!(handle.revoke("svc"));
        assert!(!handle.revoke("nobody"));
        assert_eq!(keys.verify("secret"), Err(AuthError::Invalid));
        handle.insert(key);
        assert!(keys.verify("secret").is_ok());
    }
}
