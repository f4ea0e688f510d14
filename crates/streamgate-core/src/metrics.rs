use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use serde::Serialize;
use streamgate_protocol::ErrorCode;

/// Upper bounds of the delivery latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Gateway counters, kept as atomics (readable at any time with [`Metrics::snapshot`]) and
/// mirrored to the `metrics` crate facade (`streamgate_*` names) for whatever recorder the
/// application installs. Counters that the fan-out path touches are updated once per
/// publication, not once per recipient.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicI64,
    active_streams: AtomicI64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    dropped: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// Delivery latency distribution: time from publication on this node to the frame's write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencySnapshot {
    /// `(upper bound in µs, count)` per bucket, not cumulative; the last bound is `u64::MAX`.
    pub buckets: Vec<(u64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of observations, µs.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Approximate quantile (`0.0..=1.0`) as the upper bound of its bucket, µs.
    #[must_use]
    pub fn quantile_upper_bound_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        self.buckets
            .iter()
            .find(|(_, c)| {
                seen += c;
                seen >= rank
            })
            .map(|(le, _)| *le)
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Open sessions.
    pub connections: i64,
    /// Streams with a live [`StreamHandle`](crate::StreamHandle).
    pub active_streams: i64,
    /// Client frames received.
    pub messages_in: u64,
    /// Frames enqueued to sessions (one per recipient).
    pub messages_out: u64,
    /// Volatile frames dropped because a queue was full.
    pub dropped: u64,
    /// Errors sent to clients, by code (codes with zero omitted).
    pub errors: Vec<(ErrorCode, u64)>,
    /// Delivery latency.
    pub latency: LatencySnapshot,
}

impl MetricsSnapshot {
    /// Errors counted for `code`.
    #[must_use]
    pub fn errors_for(&self, code: ErrorCode) -> u64 {
        self.errors
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }
}

impl Metrics {
    pub(crate) fn connection_opened(&self, transport: &'static str) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("streamgate_connections", "transport" => transport).increment(1.0);
    }

    pub(crate) fn connection_closed(&self, transport: &'static str) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("streamgate_connections", "transport" => transport).decrement(1.0);
    }

    pub(crate) fn stream_started(&self) {
        self.active_streams.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("streamgate_active_streams").increment(1.0);
    }

    pub(crate) fn stream_ended(&self) {
        self.active_streams.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("streamgate_active_streams").decrement(1.0);
    }

    pub(crate) fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("streamgate_messages_in_total").increment(1);
    }

    pub(crate) fn messages_out(&self, delivered: u64, dropped: u64) {
        if delivered > 0 {
            self.messages_out.fetch_add(delivered, Ordering::Relaxed);
            metrics::counter!("streamgate_messages_out_total").increment(delivered);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            metrics::counter!("streamgate_messages_dropped_total").increment(dropped);
        }
    }

    /// Counts an error sent to a client.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("streamgate_errors_total", "code" => code.as_str()).increment(1);
    }

    /// Records how long a frame took from publication to its write on the wire; transports
    /// call it once per written publication.
    pub fn record_delivery(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|le| us <= *le)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        metrics::histogram!("streamgate_delivery_latency_seconds").record(latency.as_secs_f64());
    }

    /// A copy of every counter.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let errors = ErrorCode::ALL
            .iter()
            .map(|c| (*c, self.errors[c.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let buckets = LATENCY_BUCKETS_US
            .iter()
            .copied()
            .chain([u64::MAX])
            .zip(
                self.latency_buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed)),
            )
            .collect();
        MetricsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            active_streams: self.active_streams.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors,
            latency: LatencySnapshot {
                buckets,
                count: self.latency_count.load(Ordering::Relaxed),
                sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_follow_buckets() {
        let m = Metrics::default();
        for _ in 0..90 {
            m.record_delivery(Duration::from_micros(80));
        }
        for _ in 0..10 {
            m.record_delivery(Duration::from_millis(20));
        }
        let s = m.snapshot().latency;
        assert_eq!(s.count, 100);
        assert_eq!(s.quantile_upper_bound_us(0.5), Some(100));
        assert_eq!(s.quantile_upper_bound_us(0.99), Some(25_000));
    }

    #[test]
    fn errors_are_counted_by_code() {
        let m = Metrics::default();
        m.error(ErrorCode::SlowConsumer);
        m.error(ErrorCode::SlowConsumer);
        assert_eq!(m.snapshot().errors_for(ErrorCode::SlowConsumer), 2);
        assert_eq!(m.snapshot().errors_for(ErrorCode::AuthFailed), 0);
    }
}
