use std::path::PathBuf;

/// The authentication configuration could not be used: the message names the setting, never a
/// secret.
///
/// ```
/// use streamgate_auth::{ApiKey, AuthConfigError};
///
/// let err = ApiKey::from_hash("billing", "not-hex").err();
/// assert!(matches!(err, Some(AuthConfigError::ApiKeyHash { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key (secret, PEM) is unusable for the configured algorithm.
    #[error("invalid JWT key: {0}")]
    Key(String),
    /// A JWKS document is malformed or holds no key usable with the configured algorithm.
    #[error("invalid JWKS: {0}")]
    Jwks(String),
    /// An API key hash is not 64 hexadecimal digits.
    #[error("API key {name}: the hash must be 64 hexadecimal digits (SHA-256)")]
    ApiKeyHash {
        /// The key's name.
        name: String,
    },
    /// Any other invalid setting.
    #[error("invalid auth configuration: {0}")]
    Invalid(String),
}
