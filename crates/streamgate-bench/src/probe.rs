//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! CPU times in `stat` are in clock ticks. Reading `sysconf(_SC_CLK_TCK)` needs `unsafe` (or
//! libc), which the workspace forbids; Linux has used `USER_HZ = 100` on every architecture we
//! run on, so we assume 100 ticks per second (10 ms resolution: measure for seconds, not less).

use std::time::Instant;

use anyhow::{Context as _, Result};

/// Clock ticks per second assumed for `/proc/<pid>/stat` (`USER_HZ`).
pub(crate) const TICKS_PER_SEC: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it was taken.
    pub(crate) at: Instant,
    /// utime + stime, µs.
    pub(crate) cpu_us: u64,
    /// `VmRSS`, bytes.
    pub(crate) rss: u64,
    /// Time its threads spent runnable but waiting for a CPU (`schedstat`), µs.
    pub(crate) wait_us: u64,
}

impl Sample {
    /// CPU used between `self` and `later`, as a percentage of one core.
    pub(crate) fn cpu_percent(&self, later: &Sample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        round1(later.cpu_us.saturating_sub(self.cpu_us) as f64 / 1e6 / wall * 100.0)
    }

    /// Time spent waiting for a CPU between `self` and `later`, as a percentage of the wall
    /// time: well above zero means something else ran on the core and the run is disturbed.
    pub(crate) fn wait_percent(&self, later: &Sample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        round1(later.wait_us.saturating_sub(self.wait_us) as f64 / 1e6 / wall * 100.0)
    }

    /// CPU µs used between `self` and `later`.
    pub(crate) fn cpu_us_until(&self, later: &Sample) -> u64 {
        later.cpu_us.saturating_sub(self.cpu_us)
    }
}

/// Rounds to one decimal.
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounds to three decimals.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Reads process `pid` (`None`: this process).
pub(crate) fn sample(pid: Option<u32>) -> Result<Sample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("read {dir}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses: split after the last `)`.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("a malformed stat line")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("a short stat line")?
            .parse::<u64>()
            .context("a malformed stat field")
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("read {dir}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Sample {
        at: Instant::now(),
        cpu_us: cpu_ticks * (1_000_000 / TICKS_PER_SEC),
        rss: rss_kb * 1024,
        wait_us: run_queue_wait_ns(&dir) / 1000,
    })
}

/// Run-queue wait of every thread of the process, ns (second field of each thread's
/// `schedstat`); 0 when the kernel has no schedstats.
fn run_queue_wait_ns(dir: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() -> Result<()> {
        let s = sample(None)?;
        assert!(s.rss > 0);
        Ok(())
    }
}
