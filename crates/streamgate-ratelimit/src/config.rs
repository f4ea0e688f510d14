use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use serde::{Deserialize, Serialize};
use validator::Validate;

/// A quota: at most `count` requests per `per`, refilled smoothly (GCRA): `count` may come at
/// once, then one more every `per / count`.
///
/// ```
/// use std::time::Duration;
/// use streamgate_ratelimit::Rate;
///
/// let send = Rate::per_minute(10);
/// assert_eq!(send, Rate::new(10, Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct Rate {
    /// Requests allowed per period, and the burst size.
    #[validate(range(min = 1))]
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// `count` requests per `per`.
    #[must_use]
    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    /// `count` requests per minute.
    #[must_use]
    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` requests per second.
    #[must_use]
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    pub(crate) fn quota(self, field: &str) -> Result<governor::Quota, ConfigError> {
        let invalid = || ConfigError(format!("{field}: need count >= 1 and per >= count ns"));
        let burst = NonZeroU32::new(self.count).ok_or_else(invalid)?;
        governor::Quota::with_period(self.per / self.count)
            .map(|q| q.allow_burst(burst))
            .ok_or_else(invalid)
    }
}

/// Configuration of a [`KeyedRateLimiter`](crate::KeyedRateLimiter), validated once by
/// [`KeyedRateLimiter::new`](crate::KeyedRateLimiter::new).
///
/// The defaults are the product's: `message.send` 10/min, `typing` 5 per 10 s,
/// `message.edit` and `message.delete` 3/min per user; other command kinds unlimited; no
/// global ceiling and no block; HTTP routes behind the layer 60/min per client address.
///
/// ```
/// use std::time::Duration;
/// use streamgate_ratelimit::{Rate, RateLimitConfig};
///
/// let config = RateLimitConfig::default()
///     .command("message.react", Rate::per_minute(30))
///     .default_command(Some(Rate::per_second(20)))
///     .global(Some(Rate::per_second(5_000)))
///     .block_for(Some(Duration::from_secs(30)));
/// assert_eq!(config.commands["message.send"], Rate::per_minute(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Quotas by command kind (an application command's name, `typing`, `join` …), per user
    /// across all of the user's sessions.
    pub commands: HashMap<String, Rate>,
    /// The quota of command kinds without their own entry (`None`: unlimited).
    pub default_command: Option<Rate>,
    /// One ceiling over every command of every user together (`None`: none).
    pub global: Option<Rate>,
    /// After a refusal, refuse that user's commands of that kind for this long (`None`: only
    /// the quota applies).
    pub block_for: Option<Duration>,
    /// The quota per client address of HTTP routes behind
    /// [`KeyedRateLimiter::http_layer`](crate::KeyedRateLimiter::http_layer).
    pub http_per_address: Rate,
    /// New connections per client address, on every transport, checked before
    /// authentication (a reconnect storm from one address is refused with `RATE_LIMITED`).
    pub connect_per_address: Rate,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let commands = [
            ("message.send", Rate::per_minute(10)),
            ("typing", Rate::new(5, Duration::from_secs(10))),
            ("message.edit", Rate::per_minute(3)),
            ("message.delete", Rate::per_minute(3)),
        ]
        .into_iter()
        .map(|(kind, rate)| (kind.to_owned(), rate))
        .collect();
        Self {
            commands,
            default_command: None,
            global: None,
            block_for: None,
            http_per_address: Rate::per_minute(60),
            connect_per_address: Rate::per_minute(60),
        }
    }
}

impl RateLimitConfig {
    /// Sets the quota of one command kind.
    #[must_use]
    pub fn command(mut self, kind: impl Into<String>, rate: Rate) -> Self {
        self.commands.insert(kind.into(), rate);
        self
    }

    /// Sets the quota of command kinds without their own.
    #[must_use]
    pub fn default_command(mut self, rate: Option<Rate>) -> Self {
        self.default_command = rate;
        self
    }

    /// Sets the global ceiling.
    #[must_use]
    pub fn global(mut self, rate: Option<Rate>) -> Self {
        self.global = rate;
        self
    }

    /// Sets how long a user is refused after breaching a quota.
    #[must_use]
    pub fn block_for(mut self, duration: Option<Duration>) -> Self {
        self.block_for = duration;
        self
    }

    /// Sets the HTTP quota per client address.
    #[must_use]
    pub fn http_per_address(mut self, rate: Rate) -> Self {
        self.http_per_address = rate;
        self
    }

    /// Sets how many new connections one client address may open.
    #[must_use]
    pub fn connect_per_address(mut self, rate: Rate) -> Self {
        self.connect_per_address = rate;
        self
    }
}

/// Invalid rate limit configuration; the message names the field.
///
/// ```
/// use streamgate_ratelimit::{KeyedRateLimiter, Rate, RateLimitConfig};
///
/// let config = RateLimitConfig::default().command("x", Rate::per_minute(0));
/// let err = KeyedRateLimiter::new(config).unwrap_err();
/// assert!(err.to_string().contains("commands.x"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit configuration: {0}")]
pub struct ConfigError(pub String);
