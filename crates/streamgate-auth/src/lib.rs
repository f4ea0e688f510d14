#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api_key;
mod claims;
mod error;
mod jwt;
mod strategies;
mod tenant;

pub use api_key::{ApiKey, ApiKeys, MAX_API_KEY_LEN};
pub use claims::ClaimNames;
pub use error::AuthConfigError;
pub use jwt::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LEN, JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey,
};
pub use strategies::{FnAuthenticator, Strategies, Strategy, looks_like_jwt};
pub use tenant::{
    CROSS_TENANT_PERMISSION, GuestRules, KindRules, ROOM_PERMISSION_PREFIX, Requirement,
    TenantPolicy, room_tenant,
};
