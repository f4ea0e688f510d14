use std::{collections::HashMap, time::Duration};

use serde::{Deserialize, Serialize};
use validator::Validate;

/// The policy of one room kind: how much history it keeps, for how long, whether presence is
/// tracked.
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::RoomPolicy;
///
/// let policy = RoomPolicy::default().history(5000, Duration::from_secs(600));
/// assert_eq!(policy.history_size, 5000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
pub struct RoomPolicy {
    /// Most publications kept for resume (0 disables history for the kind).
    #[validate(range(max = 1_000_000))]
    pub history_size: usize,
    /// How long a publication stays resumable.
    pub history_ttl: Duration,
    /// Whether joins and leaves produce presence diffs.
    pub presence: bool,
    /// Most sessions in one room of the kind; a join beyond it is refused with `ROOM_FULL`.
    pub max_members: Option<usize>,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            history_size: 1024,
            history_ttl: Duration::from_secs(600),
            presence: false,
            max_members: None,
        }
    }
}

impl RoomPolicy {
    /// Sets history size and retention.
    #[must_use]
    pub fn history(mut self, size: usize, ttl: Duration) -> Self {
        self.history_size = size;
        self.history_ttl = ttl;
        self
    }

    /// Limits how many sessions one room of the kind may hold.
    #[must_use]
    pub fn max_members(mut self, sessions: usize) -> Self {
        self.max_members = Some(sessions);
        self
    }

    /// Turns presence tracking on or off.
    #[must_use]
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }
}

/// Configuration of a [`Hub`](crate::Hub), validated once by [`HubBuilder::build`](crate::HubBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::{HubConfig, RoomPolicy};
///
/// let config = HubConfig::default()
///     .queue_capacity(256)
///     .room_kind("execution", RoomPolicy::default().history(10_000, Duration::from_secs(3600)));
/// assert_eq!(config.policy_for("execution").history_size, 10_000);
/// assert_eq!(config.policy_for("chat").history_size, 1024);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub struct HubConfig {
    /// Capacity of each session's outbound queue, in frames. A session whose queue is full when
    /// a non-volatile publication arrives is dropped with `SLOW_CONSUMER`.
    #[validate(range(min = 1, max = 1_000_000))]
    pub queue_capacity: usize,
    /// Policy for room kinds without their own entry.
    #[validate(nested)]
    pub default_policy: RoomPolicy,
    /// Policies by room kind.
    pub room_kinds: HashMap<String, RoomPolicy>,
    /// How often expired history and empty rooms are swept.
    pub sweep_interval: Duration,
    /// How long before a session's credentials expire it gets a `token.expiring` frame.
    pub token_expiry_warning: Duration,
    /// How often sessions are checked for expiring and expired credentials.
    pub expiry_check_interval: Duration,
    /// Failed authentications from one address before the next ones are delayed.
    pub auth_failure_threshold: u32,
    /// How long an address's failures are remembered after its last one.
    pub auth_failure_window: Duration,
    /// Longest delay for an address over the threshold (it starts at 100 ms and doubles with
    /// every further failure).
    pub auth_failure_max_delay: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            default_policy: RoomPolicy::default(),
            room_kinds: HashMap::new(),
            sweep_interval: Duration::from_secs(30),
            token_expiry_warning: Duration::from_secs(60),
            expiry_check_interval: Duration::from_secs(1),
            auth_failure_threshold: 5,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_max_delay: Duration::from_secs(5),
        }
    }
}

impl HubConfig {
    /// Sets the per-session queue capacity.
    #[must_use]
    pub fn queue_capacity(mut self, frames: usize) -> Self {
        self.queue_capacity = frames;
        self
    }

    /// Sets the policy of a room kind.
    #[must_use]
    pub fn room_kind(mut self, kind: impl Into<String>, policy: RoomPolicy) -> Self {
        self.room_kinds.insert(kind.into(), policy);
        self
    }

    /// Sets when sessions are warned before their credentials expire, and how often that is
    /// checked.
    #[must_use]
    pub fn token_expiry(mut self, warning: Duration, check_every: Duration) -> Self {
        self.token_expiry_warning = warning;
        self.expiry_check_interval = check_every;
        self
    }

    /// The policy that applies to rooms of `kind`.
    #[must_use]
    pub fn policy_for(&self, kind: &str) -> &RoomPolicy {
        self.room_kinds.get(kind).unwrap_or(&self.default_policy)
    }

    /// Checks every field; the error names the field and what is wrong.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.validate().map_err(|e| ConfigError(e.to_string()))?;
        for (kind, policy) in &self.room_kinds {
            if format!("{kind}:x")
                .parse::<streamgate_protocol::RoomId>()
                .is_err()
            {
                return Err(ConfigError(format!(
                    "room_kinds.{kind}: not a valid room kind"
                )));
            }
            policy
                .validate()
                .map_err(|e| ConfigError(format!("room_kinds.{kind}: {e}")))?;
        }
        if self.sweep_interval.is_zero() {
            return Err(ConfigError("sweep_interval: must be positive".into()));
        }
        if self.expiry_check_interval.is_zero() {
            return Err(ConfigError(
                "expiry_check_interval: must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);
