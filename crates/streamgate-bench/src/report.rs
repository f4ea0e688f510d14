//! The one JSON object printed on stdout. Parts a scenario does not measure are `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::probe::{Sample, round1, round3};
use crate::stats::{Latency, Stats};

/// The result of one run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// `--system`.
    pub(crate) system: String,
    /// `--scenario`.
    pub(crate) scenario: String,
    /// Whether the run is valid: no deadline hit, nothing missing or duplicated (streamgate),
    /// every client connected (apart from counted refusals).
    pub(crate) ok: bool,
    /// Why `ok` is false.
    pub(crate) problems: Vec<String>,
    /// A fatal error that ended the run early.
    pub(crate) error: Option<String>,
    /// Why the scenario did not run for this system.
    pub(crate) skipped: Option<String>,
    /// The scenario's options in effect.
    pub(crate) params: BTreeMap<String, serde_json::Value>,
    /// Client connections attempted (publishers not included).
    pub(crate) connections: u64,
    /// Connections that authenticated and joined.
    pub(crate) connected: u64,
    /// Connection attempts the server refused for load.
    pub(crate) refused: u64,
    /// Refusal codes seen (`503 SERVER_OVERLOADED` …) with counts.
    pub(crate) refusal_codes: BTreeMap<String, u64>,
    /// Other errors.
    pub(crate) errors: u64,
    /// The first few error messages.
    pub(crate) error_samples: Vec<String>,
    /// Publications a subscriber received more than once.
    pub(crate) duplicates: u64,
    /// Publications a subscriber never received (within the grace period).
    pub(crate) missing: u64,
    /// Publications sent over the whole run.
    pub(crate) publications: Option<u64>,
    /// Deliveries inside the measured window.
    pub(crate) deliveries: Option<u64>,
    /// Length of the measured window, s.
    pub(crate) duration_secs: Option<f64>,
    /// Deliveries per second inside the window.
    pub(crate) deliveries_per_sec: Option<f64>,
    /// Publish-to-receive latency inside the window, µs.
    pub(crate) latency_us: Option<Latency>,
    /// Fanout phase 2: a fixed offered rate.
    pub(crate) fixed_rate: Option<FixedRate>,
    /// How fast clients connected (storm; also measured by the others).
    pub(crate) connect: Option<Connect>,
    /// Idle: whether every held connection still receives.
    pub(crate) liveness: Option<Liveness>,
    /// The server process.
    pub(crate) server: Option<Server>,
    /// The generator itself: when it is near 100 % the numbers measure the client.
    pub(crate) generator: Option<Generator>,
}

/// Fanout phase 2.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FixedRate {
    /// Deliveries per second offered.
    pub(crate) offered_per_sec: f64,
    /// Publications per second that makes.
    pub(crate) publications_per_sec: f64,
    /// Publications sent.
    pub(crate) publications: u64,
    /// Deliveries inside the window.
    pub(crate) deliveries: u64,
    /// Deliveries per second achieved.
    pub(crate) deliveries_per_sec: f64,
    /// Latency, µs.
    pub(crate) latency_us: Option<Latency>,
    /// Server CPU during the phase.
    pub(crate) server_cpu_percent: Option<f64>,
    /// Server CPU µs per delivery during the phase.
    pub(crate) server_cpu_us_per_delivery: Option<f64>,
    /// Generator CPU during the phase.
    pub(crate) generator_cpu_percent: Option<f64>,
}

/// Connection establishment.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Connect {
    /// Connected clients per second, from the first attempt to the last success.
    pub(crate) per_sec: f64,
    /// Seconds from the first attempt to the last success.
    pub(crate) secs: f64,
    /// Median time to authenticated and joined, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile, ms.
    pub(crate) p99_ms: f64,
    /// Slowest, ms.
    pub(crate) max_ms: f64,
    /// Concurrent handshakes allowed (`null`: all at once).
    pub(crate) concurrency: Option<usize>,
}

/// Idle liveness check.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Liveness {
    /// Publications sent (one per room).
    pub(crate) publications: u64,
    /// Deliveries expected (= connections held).
    pub(crate) expected: u64,
    /// Deliveries received.
    pub(crate) delivered: u64,
    /// Connections that died while held.
    pub(crate) lost: u64,
    /// Seconds the connections were held before the check.
    pub(crate) held_secs: f64,
}

/// The server process.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Server {
    /// Its pid.
    pub(crate) pid: u32,
    /// CPU over the measured window, % of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// CPU µs over the window per delivery.
    pub(crate) cpu_us_per_delivery: Option<f64>,
    /// CPU µs over the window.
    pub(crate) cpu_us: Option<u64>,
    /// Storm: CPU µs per connection accepted.
    pub(crate) cpu_us_per_connection: Option<f64>,
    /// RSS at the end of the window.
    pub(crate) rss_bytes: Option<u64>,
    /// RSS before any client connected.
    pub(crate) rss_baseline_bytes: Option<u64>,
    /// RSS once every client connected.
    pub(crate) rss_after_connect_bytes: Option<u64>,
    /// `(after_connect - baseline) / connected`.
    pub(crate) rss_per_connection_bytes: Option<f64>,
}

/// The generator process (the parent; workers are summed into `cpu_percent` when known).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Generator {
    /// CPU over the measured window, % of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// % of the window it waited for a CPU (another process on its core).
    pub(crate) cpu_wait_percent: Option<f64>,
    /// RSS at the end.
    pub(crate) rss_bytes: Option<u64>,
    /// Processes used.
    pub(crate) processes: usize,
}

/// What a process's clients counted, as merged across worker processes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Counts {
    /// Connected.
    pub(crate) connected: u64,
    /// Refused for load.
    pub(crate) refused: u64,
    /// Refusal codes.
    pub(crate) refusal_codes: BTreeMap<String, u64>,
    /// Errors.
    pub(crate) errors: u64,
    /// Error samples.
    pub(crate) error_samples: Vec<String>,
    /// Duplicates.
    pub(crate) duplicates: u64,
    /// Deliveries.
    pub(crate) deliveries: u64,
}

impl Counts {
    /// The counters of `stats`, with `connected` clients.
    pub(crate) fn of(stats: &Stats, connected: u64) -> Self {
        Self {
            connected,
            refused: stats.refused.get(),
            refusal_codes: stats.refusal_codes.borrow().clone(),
            errors: stats.errors.get(),
            error_samples: stats.error_samples.borrow().clone(),
            duplicates: stats.duplicates.get(),
            deliveries: stats.deliveries.get(),
        }
    }

    /// Adds `other`.
    pub(crate) fn merge(&mut self, other: &Counts) {
        self.connected += other.connected;
        self.refused += other.refused;
        for (code, n) in &other.refusal_codes {
            *self.refusal_codes.entry(code.clone()).or_default() += n;
        }
        self.errors += other.errors;
        for s in &other.error_samples {
            if self.error_samples.len() < 8 {
                self.error_samples.push(s.clone());
            }
        }
        self.duplicates += other.duplicates;
        self.deliveries += other.deliveries;
    }
}

impl Report {
    /// Copies the counters in.
    pub(crate) fn set_counts(&mut self, counts: &Counts) {
        self.connected = counts.connected;
        self.refused = counts.refused;
        self.refusal_codes.clone_from(&counts.refusal_codes);
        self.errors = counts.errors;
        self.error_samples.clone_from(&counts.error_samples);
        self.duplicates = counts.duplicates;
    }

    /// Fills the window measurements: deliveries, rate, latency, server and generator CPU.
    pub(crate) fn set_window(
        &mut self,
        deliveries: u64,
        secs: f64,
        latency: Option<Latency>,
        server: Option<(Sample, Sample)>,
        generator: Option<(Sample, Sample)>,
    ) {
        self.deliveries = Some(deliveries);
        self.duration_secs = Some(round3(secs));
        self.deliveries_per_sec = Some(rate(deliveries, secs));
        self.latency_us = latency;
        if let (Some(server), Some((a, b))) = (self.server.as_mut(), server) {
            server.cpu_percent = Some(a.cpu_percent(&b));
            server.cpu_us = Some(a.cpu_us_until(&b));
            server.cpu_us_per_delivery = per_delivery(a.cpu_us_until(&b), deliveries);
            server.rss_bytes = Some(b.rss);
        }
        if let Some((a, b)) = generator {
            let g = self.generator.get_or_insert_with(Generator::default);
            g.cpu_percent = Some(a.cpu_percent(&b));
            g.cpu_wait_percent = Some(a.wait_percent(&b));
            g.rss_bytes = Some(b.rss);
        }
    }

    /// Records the server's RSS once everyone connected.
    pub(crate) fn set_rss_after_connect(&mut self, rss: u64) {
        let connected = self.connected;
        if let Some(server) = self.server.as_mut() {
            server.rss_after_connect_bytes = Some(rss);
            if let Some(baseline) = server.rss_baseline_bytes
                && connected > 0
            {
                server.rss_per_connection_bytes = Some(round1(
                    rss.saturating_sub(baseline) as f64 / connected as f64,
                ));
            }
        }
    }

    /// Adds a problem (and clears `ok`).
    pub(crate) fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }
}

/// `n / secs`, rounded.
pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round1(n as f64 / secs)
    } else {
        0.0
    }
}

/// CPU µs per delivery, three decimals.
pub(crate) fn per_delivery(cpu_us: u64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| round3(cpu_us as f64 / deliveries as f64))
}
