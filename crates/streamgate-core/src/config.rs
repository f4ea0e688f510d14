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
    /// How long a room's presence changes are collected before they go out as one `presence`
    /// frame (per room and window).
    pub presence_batch_window: Duration,
    /// How long all of a user's sessions in a room must be inactive (no command other than
    /// `ping`, `ack`, `refresh` or `presence`) before the user shows as `away` there.
    pub presence_away_after: Duration,
    /// How long typing lasts without a renewing `typing_start`; then the server sends
    /// `typing.stop` itself.
    pub typing_timeout: Duration,
    /// How long a [`PresenceStore`](crate::PresenceStore) entry lives without a refresh. The
    /// hub refreshes its own entries at every sweep, so this must exceed `sweep_interval`; it
    /// only drops entries that no live node refreshes (a node that died).
    pub presence_ttl: Duration,
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
    /// How long a recipient has to acknowledge an `ack` publication before it is sent again.
    pub ack_timeout: Duration,
    /// Deliveries of an `ack` publication to one session (the first one included) before the
    /// recipient is reported failed.
    #[validate(range(min = 1, max = 100))]
    pub ack_attempts: u32,
    /// Publications kept per offline user (0 turns offline queues off); the oldest is dropped
    /// when a new one arrives at a full queue.
    #[validate(range(max = 100_000))]
    pub offline_queue_size: usize,
    /// How long a publication waits in an offline queue.
    pub offline_ttl: Duration,
    /// Offline users with a queue at once; publications for further offline users are dropped
    /// (and counted) until queues drain or expire.
    #[validate(range(min = 1))]
    pub offline_max_users: usize,
    /// Most open sessions at once, over all transports together (`None`, the default: no
    /// limit). While this many are open, [`Hub::admit`](crate::Hub::admit) refuses new
    /// connections with `SERVER_OVERLOADED` (HTTP 503 on the WebSocket upgrade and the SSE
    /// request); open sessions keep working. Checked by [`HubConfig::check`]: at least 1.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            default_policy: RoomPolicy::default(),
            room_kinds: HashMap::new(),
            sweep_interval: Duration::from_secs(30),
            presence_batch_window: Duration::from_millis(50),
            presence_away_after: Duration::from_secs(60),
            typing_timeout: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(300),
            token_expiry_warning: Duration::from_secs(60),
            expiry_check_interval: Duration::from_secs(1),
            auth_failure_threshold: 5,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_max_delay: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            ack_attempts: 3,
            offline_queue_size: 100,
            offline_ttl: Duration::from_secs(3600),
            offline_max_users: 100_000,
            max_connections: None,
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

    /// Limits how many sessions may be open at once, over all transports together (default:
    /// unlimited). While `sessions` are open, [`Hub::admit`](crate::Hub::admit) refuses new
    /// connections with `SERVER_OVERLOADED` and `retry_after_ms`; `0` is invalid.
    ///
    /// ```
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().max_connections(10_000);
    /// assert_eq!(config.max_connections, Some(10_000));
    /// assert!(config.check().is_ok());
    /// let zero = HubConfig::default().max_connections(0).check().unwrap_err();
    /// assert!(zero.to_string().contains("max_connections"), "{zero}");
    /// ```
    #[must_use]
    pub fn max_connections(mut self, sessions: usize) -> Self {
        self.max_connections = Some(sessions);
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

    /// Sets how long a recipient has to acknowledge an `ack` publication, and how many
    /// deliveries (the first one included) it gets before it is reported failed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().acks(Duration::from_secs(2), 5);
    /// assert_eq!(config.ack_attempts, 5);
    /// assert!(config.check().is_ok());
    /// assert!(HubConfig::default().acks(Duration::ZERO, 3).check().is_err());
    /// ```
    #[must_use]
    pub fn acks(mut self, timeout: Duration, attempts: u32) -> Self {
        self.ack_timeout = timeout;
        self.ack_attempts = attempts;
        self
    }

    /// Sets the offline queue of every user: at most `size` publications (0 turns offline
    /// delivery off), each kept for `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().offline_queue(50, Duration::from_secs(600));
    /// assert_eq!(config.offline_queue_size, 50);
    /// assert!(config.check().is_ok());
    /// ```
    #[must_use]
    pub fn offline_queue(mut self, size: usize, ttl: Duration) -> Self {
        self.offline_queue_size = size;
        self.offline_ttl = ttl;
        self
    }

    /// Sets how long presence changes are batched per room before one `presence` frame goes
    /// out (default 50 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().presence_batch_window(Duration::from_millis(100));
    /// assert!(config.check().is_ok());
    /// assert!(HubConfig::default().presence_batch_window(Duration::ZERO).check().is_err());
    /// ```
    #[must_use]
    pub fn presence_batch_window(mut self, window: Duration) -> Self {
        self.presence_batch_window = window;
        self
    }

    /// Sets how long a user's sessions in a room must all be inactive before the user shows as
    /// `away` there (default 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().presence_away_after(Duration::from_secs(300));
    /// assert_eq!(config.presence_away_after, Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn presence_away_after(mut self, inactive: Duration) -> Self {
        self.presence_away_after = inactive;
        self
    }

    /// Sets how long typing lasts without a renewal before the server ends it with
    /// `typing.stop` (default 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().typing_timeout(Duration::from_secs(3));
    /// assert_eq!(config.typing_timeout, Duration::from_secs(3));
    /// ```
    #[must_use]
    pub fn typing_timeout(mut self, timeout: Duration) -> Self {
        self.typing_timeout = timeout;
        self
    }

    /// Sets how long a presence entry lives in the store without a refresh (default 5 min);
    /// must exceed the sweep interval, at which the hub refreshes its own entries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamgate_core::HubConfig;
    ///
    /// let config = HubConfig::default().presence_ttl(Duration::from_secs(120));
    /// assert!(config.check().is_ok());
    /// // Shorter than the sweep interval (30 s): live entries of other nodes would expire.
    /// assert!(HubConfig::default().presence_ttl(Duration::from_secs(10)).check().is_err());
    /// ```
    #[must_use]
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
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
        for (name, value) in [
            ("presence_batch_window", self.presence_batch_window),
            ("presence_away_after", self.presence_away_after),
            ("typing_timeout", self.typing_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{name}: must be positive")));
            }
        }
        if self.presence_ttl <= self.sweep_interval {
            return Err(ConfigError(
                "presence_ttl: must be longer than sweep_interval".into(),
            ));
        }
        if self.ack_timeout.is_zero() {
            return Err(ConfigError("ack_timeout: must be positive".into()));
        }
        if self.offline_queue_size > 0 && self.offline_ttl.is_zero() {
            return Err(ConfigError(
                "offline_ttl: must be positive when offline_queue_size > 0".into(),
            ));
        }
        if self.expiry_check_interval.is_zero() {
            return Err(ConfigError(
                "expiry_check_interval: must be positive".into(),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError(
                "max_connections: must be at least 1 (leave it unset for no limit)".into(),
            ));
        }
        Ok(())
    }
}

/// Invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);
