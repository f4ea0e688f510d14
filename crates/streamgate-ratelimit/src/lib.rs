#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod http;
mod limiter;

pub use config::{ConfigError, Rate, RateLimitConfig};
pub use http::{HttpRateLimit, HttpRateLimitLayer};
pub use limiter::KeyedRateLimiter;
