use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock, Reference},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DashMapStateStore},
};
use streamgate_core::{RateKey, RateLimiter, RateSubject};

use crate::{ConfigError, RateLimitConfig};

/// The owned form of a [`RateSubject`], stored as the limiters' key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User {
        tenant: Option<Box<str>>,
        user: Box<str>,
    },
    Session(u64),
}

impl From<RateSubject<'_>> for SubjectKey {
    fn from(subject: RateSubject<'_>) -> Self {
        match subject {
            RateSubject::User { tenant, user } => Self::User {
                tenant: tenant.map(Box::from),
                user: Box::from(user),
            },
            RateSubject::Session(id) => Self::Session(id.get()),
        }
    }
}

type Keyed<K, C> =
    governor::RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Inner<C: Clock + Clone> {
    clock: C,
    /// One keyed limiter per configured command kind: keys are users (or anonymous sessions).
    commands: HashMap<String, Keyed<SubjectKey, C>>,
    default_command: Option<Keyed<SubjectKey, C>>,
    global: Option<Direct<C>>,
    block_for: Option<Duration>,
    /// `(subject, kind)` refused until the instant, after a breach with `block_for` set.
    blocked: DashMap<(SubjectKey, Box<str>), C::Instant>,
    http: Keyed<IpAddr, C>,
    connect: Keyed<IpAddr, C>,
}

/// A [`RateLimiter`] built on governor's keyed GCRA limiters: per-user quotas per command
/// kind (one budget across all of a user's sessions), an optional default quota, one
/// optional global ceiling, an optional block after a breach, and an
/// [HTTP layer](KeyedRateLimiter::http_layer) keyed by client address. Cloning is cheap and
/// clones share their state.
///
/// **Memory**: every key seen is remembered until [`sweep`](KeyedRateLimiter::sweep) finds it
/// idle (its budget fully refilled) and evicts it, then shrinks the maps. Given to a hub with
/// `HubBuilder::rate_limiter`, the hub's sweeper calls `sweep` every `sweep_interval`
/// (default 30 s); used on its own (only the HTTP layer), call `sweep` on an interval
/// yourself.
///
/// ```
/// use streamgate_core::{RateKey, RateLimiter, RateSubject};
/// use streamgate_ratelimit::{KeyedRateLimiter, RateLimitConfig};
///
/// let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
/// let alice = RateKey::new(RateSubject::User { tenant: None, user: "alice" }, "message.send");
/// for _ in 0..10 {
///     assert!(limiter.check(&alice).is_ok());
/// }
/// let retry_after = limiter.check(&alice).unwrap_err();
/// assert!(retry_after.as_secs() <= 60);
/// # Ok::<(), streamgate_ratelimit::ConfigError>(())
/// ```
pub struct KeyedRateLimiter<C: Clock + Clone = DefaultClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock + Clone> Clone for KeyedRateLimiter<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock + Clone> std::fmt::Debug for KeyedRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl KeyedRateLimiter {
    /// Validates `config` and builds a limiter on the monotonic clock.
    pub fn new(config: RateLimitConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> KeyedRateLimiter<C> {
    /// Builds a limiter on `clock`; tests pass governor's `FakeRelativeClock` to move time
    /// without sleeping.
    ///
    /// ```
    /// use std::time::Duration;
    /// use governor::clock::FakeRelativeClock;
    /// use streamgate_core::{RateKey, RateLimiter, RateSubject};
    /// use streamgate_ratelimit::{KeyedRateLimiter, RateLimitConfig};
    ///
    /// let clock = FakeRelativeClock::default();
    /// let limiter = KeyedRateLimiter::with_clock(RateLimitConfig::default(), clock.clone())?;
    /// let key = RateKey::new(RateSubject::User { tenant: None, user: "u" }, "message.edit");
    /// for _ in 0..3 {
    ///     assert!(limiter.check(&key).is_ok());
    /// }
    /// assert!(limiter.check(&key).is_err());
    /// clock.advance(Duration::from_secs(20)); // 3/min: one more every 20 s
    /// assert!(limiter.check(&key).is_ok());
    /// # Ok::<(), streamgate_ratelimit::ConfigError>(())
    /// ```
    pub fn with_clock(config: RateLimitConfig, clock: C) -> Result<Self, ConfigError> {
        let keyed = |quota| Keyed::dashmap_with_clock(quota, clock.clone());
        let mut commands = HashMap::with_capacity(config.commands.len());
        for (kind, rate) in config.commands {
            if kind.is_empty() || kind.len() > 64 {
                return Err(ConfigError(format!(
                    "commands.{kind}: kind must be 1-64 bytes"
                )));
            }
            let quota = rate.quota(&format!("commands.{kind}"))?;
            commands.insert(kind, keyed(quota));
        }
        let default_command = config
            .default_command
            .map(|r| r.quota("default_command").map(&keyed))
            .transpose()?;
        let global = config
            .global
            .map(|r| {
                r.quota("global")
                    .map(|q| Direct::direct_with_clock(q, clock.clone()))
            })
            .transpose()?;
        if config.block_for.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError("block_for: must be positive when set".into()));
        }
        let http = Keyed::dashmap_with_clock(
            config.http_per_address.quota("http_per_address")?,
            clock.clone(),
        );
        let connect = Keyed::dashmap_with_clock(
            config.connect_per_address.quota("connect_per_address")?,
            clock.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                connect,
                commands,
                default_command,
                global,
                block_for: config.block_for,
                blocked: DashMap::new(),
                http,
                clock,
            }),
        })
    }

    /// Checks one request of the HTTP layer from `address`.
    ///
    /// ```
    /// use streamgate_ratelimit::{KeyedRateLimiter, Rate, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default().http_per_address(Rate::per_minute(1));
    /// let limiter = KeyedRateLimiter::new(config)?;
    /// let address = [127, 0, 0, 1].into();
    /// assert!(limiter.check_address(address).is_ok());
    /// assert!(limiter.check_address(address).is_err());
    /// # Ok::<(), streamgate_ratelimit::ConfigError>(())
    /// ```
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        let inner = &self.inner;
        inner
            .http
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(inner.clock.now()))
    }

    /// Evicts idle keys (whose budget is full again, and expired blocks) and shrinks the maps,
    /// so memory follows the number of recently active users, not of all users ever seen.
    ///
    /// ```
    /// use streamgate_core::{RateKey, RateLimiter, RateSubject};
    /// use streamgate_ratelimit::{KeyedRateLimiter, RateLimitConfig};
    ///
    /// let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
    /// limiter.check(&RateKey::new(RateSubject::User { tenant: None, user: "u" }, "typing")).ok();
    /// assert_eq!(limiter.len(), 1);
    /// limiter.sweep(); // still within its 10 s window: kept
    /// assert_eq!(limiter.len(), 1);
    /// # Ok::<(), streamgate_ratelimit::ConfigError>(())
    /// ```
    pub fn sweep(&self) {
        let inner = &self.inner;
        for limiter in inner.commands.values().chain(&inner.default_command) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&inner.http, &inner.connect] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = inner.clock.now();
        inner.blocked.retain(|_, until| *until > now);
        inner.blocked.shrink_to_fit();
    }

    /// Keys currently remembered: users (or anonymous sessions) per command kind, client
    /// addresses of the HTTP layer, and active blocks.
    #[must_use]
    pub fn len(&self) -> usize {
        let inner = &self.inner;
        inner
            .commands
            .values()
            .chain(&inner.default_command)
            .map(governor::RateLimiter::len)
            .sum::<usize>()
            + inner.http.len()
            + inner.connect.len()
            + inner.blocked.len()
    }

    /// Whether no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_command(&self, key: &RateKey<'_>) -> Result<(), Duration> {
        let inner = &self.inner;
        let limiter = inner
            .commands
            .get(key.kind)
            .or(inner.default_command.as_ref());
        if limiter.is_none() && inner.global.is_none() {
            return Ok(());
        }
        let subject = SubjectKey::from(key.subject);
        let now = inner.clock.now();
        let blocked_key = inner
            .block_for
            .map(|_| (subject.clone(), Box::<str>::from(key.kind)));
        if let Some(blocked_key) = &blocked_key
            && let Some(until) = inner.blocked.get(blocked_key)
            && *until > now
        {
            return Err(Duration::from(until.duration_since(now)));
        }
        if let Some(not_until) = limiter.and_then(|l| l.check_key(&subject).err()) {
            let wait = not_until.wait_time_from(now);
            // Only a user's own breach blocks them, never the global ceiling.
            return Err(match (inner.block_for, blocked_key) {
                (Some(block), Some(blocked_key)) => {
                    let wait = wait.max(block);
                    inner.blocked.insert(blocked_key, now + wait.into());
                    wait
                }
                _ => wait,
            });
        }
        match inner.global.as_ref().map(Direct::check) {
            Some(Err(not_until)) => Err(not_until.wait_time_from(now)),
            _ => Ok(()),
        }
    }
}

impl<C> RateLimiter for KeyedRateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn check(&self, key: &RateKey<'_>) -> Result<(), Duration> {
        self.check_command(key)
    }

    fn check_connect(&self, address: IpAddr) -> Result<(), Duration> {
        let inner = &self.inner;
        inner
            .connect
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(inner.clock.now()))
    }

    fn sweep(&self) {
        KeyedRateLimiter::sweep(self);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

    use governor::clock::FakeRelativeClock;
    use streamgate_core::SessionId;

    use super::*;
    use crate::Rate;

    fn limiter(
        config: RateLimitConfig,
    ) -> (KeyedRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = KeyedRateLimiter::with_clock(config, clock.clone()).unwrap();
        (limiter, clock)
    }

    fn user<'a>(user: &'a str, kind: &'a str) -> RateKey<'a> {
        RateKey::new(RateSubject::User { tenant: None, user }, kind)
    }

    fn allowed(limiter: &impl RateLimiter, key: &RateKey<'_>, n: usize) -> usize {
        (0..n).filter(|_| limiter.check(key).is_ok()).count()
    }

    #[test]
    fn default_quotas_are_the_products() {
        let (limiter, _clock) = limiter(RateLimitConfig::default());
        assert_eq!(allowed(&limiter, &user("a", "message.send"), 20), 10);
        assert_eq!(allowed(&limiter, &user("a", "typing"), 20), 5);
        assert_eq!(allowed(&limiter, &user("a", "message.edit"), 20), 3);
        assert_eq!(allowed(&limiter, &user("a", "message.delete"), 20), 3);
        // Unconfigured kinds are unlimited without a default quota.
        assert_eq!(allowed(&limiter, &user("a", "join"), 1000), 1000);
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_the_budget_refills() {
        let (limiter, clock) = limiter(RateLimitConfig::default());
        let key = user("a", "message.send");
        assert_eq!(allowed(&limiter, &key, 10), 10);
        let wait = limiter.check(&key).unwrap_err();
        // 10/min refills one every 6 s.
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        clock.advance(wait);
        assert!(limiter.check(&key).is_ok());
        assert!(limiter.check(&key).is_err());
        clock.advance(Duration::from_secs(60));
        assert_eq!(allowed(&limiter, &key, 20), 10);
    }

    #[test]
    fn a_user_has_one_budget_and_other_users_their_own() {
        let (limiter, _clock) = limiter(RateLimitConfig::default());
        // Two sessions of one user map to the same key: the subject is the user.
        let principal = streamgate_core::Principal::user("a");
        let s1: SessionId = "s1".parse().unwrap();
        let s2: SessionId = "s2".parse().unwrap();
        let k1 = RateKey::new(RateSubject::of(&principal, s1), "message.send");
        let k2 = RateKey::new(RateSubject::of(&principal, s2), "message.send");
        assert_eq!(allowed(&limiter, &k1, 5) + allowed(&limiter, &k2, 6), 10);
        assert!(limiter.check(&k1).is_err());
        assert_eq!(allowed(&limiter, &user("b", "message.send"), 10), 10);
        // Same user id in another tenant: another budget.
        let other_tenant = RateKey::new(
            RateSubject::User {
                tenant: Some("t2"),
                user: "a",
            },
            "message.send",
        );
        assert!(limiter.check(&other_tenant).is_ok());
        // Anonymous sessions are charged per session.
        let anonymous = streamgate_core::Principal::anonymous();
        let a1 = RateKey::new(RateSubject::of(&anonymous, s1), "message.send");
        let a2 = RateKey::new(RateSubject::of(&anonymous, s2), "message.send");
        assert_eq!(allowed(&limiter, &a1, 11), 10);
        assert_eq!(allowed(&limiter, &a2, 11), 10);
    }

    #[test]
    fn default_quota_global_ceiling_and_block() {
        let config = RateLimitConfig::default()
            .default_command(Some(Rate::per_minute(2)))
            .global(Some(Rate::per_minute(25)))
            .block_for(Some(Duration::from_secs(300)));
        let (limiter, clock) = limiter(config);
        assert_eq!(allowed(&limiter, &user("a", "join"), 5), 2);
        // The breach blocks `a`'s joins for 5 minutes, longer than the quota would.
        let wait = limiter.check(&user("a", "join")).unwrap_err();
        assert!(wait > Duration::from_secs(290), "{wait:?}");
        clock.advance(Duration::from_secs(60));
        assert!(limiter.check(&user("a", "join")).is_err());
        clock.advance(Duration::from_secs(241));
        assert!(limiter.check(&user("a", "join")).is_ok());
        // The ceiling has refilled: `a` used one, 24 more go through across users, then it
        // refuses everyone.
        let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
        let through: usize = users
            .iter()
            .map(|u| allowed(&limiter, &user(u, "join"), 2))
            .sum();
        assert_eq!(through, 24);
        assert!(limiter.check(&user("fresh", "join")).is_err());
        // The global ceiling blocks nobody.
        assert!(
            limiter
                .inner
                .blocked
                .iter()
                .all(|e| matches!(&e.key().0, SubjectKey::User { user, .. } if &**user == "a"))
        );
    }

    #[test]
    fn idle_keys_are_evicted_and_memory_stays_bounded() {
        let (limiter, clock) = limiter(RateLimitConfig::default());
        let names: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
        for name in &names {
            assert!(limiter.check(&user(name, "message.send")).is_ok());
        }
        assert_eq!(limiter.len(), 100_000);
        // Still within the minute: their state differs from a fresh key's, so they stay.
        limiter.sweep();
        assert_eq!(limiter.len(), 100_000);
        clock.advance(Duration::from_secs(61));
        let active = user("still-active", "message.send");
        assert!(limiter.check(&active).is_ok());
        limiter.sweep();
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn invalid_configuration_is_refused() {
        let zero = RateLimitConfig::default().command("x", Rate::per_minute(0));
        assert!(KeyedRateLimiter::new(zero).is_err());
        let no_period = RateLimitConfig::default().global(Some(Rate::new(5, Duration::ZERO)));
        assert!(KeyedRateLimiter::new(no_period).is_err());
        let block = RateLimitConfig::default().block_for(Some(Duration::ZERO));
        assert!(KeyedRateLimiter::new(block).is_err());
    }
}
