//! Slows down repeated authentication failures from one address, so that guessing tokens from
//! one host gets slower with every miss while other clients are not affected.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use dashmap::DashMap;

/// Most addresses tracked at once; beyond it new addresses are not tracked (memory stays
/// bounded; the per-user and connection limits of the rate limiter still apply).
const MAX_TRACKED: usize = 100_000;
/// The first delay once an address is over the threshold; it doubles with each further miss.
const BASE_DELAY: Duration = Duration::from_millis(100);

struct Failures {
    count: u32,
    last: Instant,
}

pub(crate) struct AuthThrottle {
    failures: DashMap<IpAddr, Failures>,
    threshold: u32,
    window: Duration,
    max_delay: Duration,
}

impl AuthThrottle {
    pub(crate) fn new(threshold: u32, window: Duration, max_delay: Duration) -> Self {
        Self {
            failures: DashMap::new(),
            threshold,
            window,
            max_delay,
        }
    }

    /// How long to hold the next authentication from `ip`.
    pub(crate) fn delay(&self, ip: IpAddr) -> Duration {
        let Some(entry) = self.failures.get(&ip) else {
            return Duration::ZERO;
        };
        if entry.last.elapsed() > self.window || entry.count < self.threshold {
            return Duration::ZERO;
        }
        let doublings = (entry.count - self.threshold).min(16);
        BASE_DELAY
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    pub(crate) fn failed(&self, ip: IpAddr) {
        if let Some(mut entry) = self.failures.get_mut(&ip) {
            if entry.last.elapsed() > self.window {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = Instant::now();
            return;
        }
        if self.failures.len() < MAX_TRACKED {
            self.failures.insert(
                ip,
                Failures {
                    count: 1,
                    last: Instant::now(),
                },
            );
        }
    }

    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.failures.remove(&ip);
    }

    /// Forgets addresses whose last failure is older than the window.
    pub(crate) fn sweep(&self) {
        self.failures.retain(|_, f| f.last.elapsed() <= self.window);
    }

    pub(crate) fn tracked(&self) -> usize {
        self.failures.len()
    }
}
