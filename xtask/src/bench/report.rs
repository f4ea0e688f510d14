//! The load report: medians of the runs, the tables of `docs/benchmarks.md` with ratios to
//! Node and to bare socketioxide, the issue's targets checked, and an SVG plot.

use std::fmt::Write as _;

use super::load::{Outcome, Run, SCENARIOS, SYSTEMS};

/// Whether more of a metric is better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

/// How a metric is printed.
#[derive(Clone, Copy)]
enum Unit {
    /// A count per second, with thousands separators.
    PerSec,
    /// Microseconds, printed as µs with 2 decimals.
    Micros,
    /// Microseconds, printed as milliseconds.
    MicrosAsMillis,
    /// Milliseconds.
    Millis,
    /// Bytes, printed as KiB.
    Bytes,
    /// A plain count.
    Count,
}

struct Metric {
    pointer: &'static str,
    label: &'static str,
    unit: Unit,
    better: Better,
}

const fn metric(pointer: &'static str, label: &'static str, unit: Unit, better: Better) -> Metric {
    Metric {
        pointer,
        label,
        unit,
        better,
    }
}

/// The columns of each scenario's table; the first is the headline, compared by ratio.
fn metrics(scenario: &str) -> Vec<Metric> {
    use Better::{Higher, Lower, Neither};
    use Unit::{Bytes, Count, Micros, MicrosAsMillis, Millis, PerSec};
    let cpu = metric(
        "/server/cpu_us_per_delivery",
        "server CPU per delivery",
        Micros,
        Lower,
    );
    match scenario {
        "fanout" => vec![
            metric("/deliveries_per_sec", "deliveries/s", PerSec, Higher),
            cpu,
            metric(
                "/latency_us/p99",
                "p99 (closed loop)",
                MicrosAsMillis,
                Lower,
            ),
            metric(
                "/fixed_rate/deliveries_per_sec",
                "at 30k/s offered: deliveries/s",
                PerSec,
                Neither,
            ),
            metric("/fixed_rate/latency_us/p50", "p50", MicrosAsMillis, Lower),
            metric("/fixed_rate/latency_us/p99", "p99", MicrosAsMillis, Lower),
            metric(
                "/server/rss_per_connection_bytes",
                "RSS per connection",
                Bytes,
                Lower,
            ),
        ],
        "fanout-1k" => vec![
            metric("/deliveries_per_sec", "deliveries/s", PerSec, Higher),
            cpu,
            metric("/latency_us/p99", "p99", MicrosAsMillis, Lower),
        ],
        "chat" => vec![
            metric("/deliveries_per_sec", "deliveries/s", PerSec, Higher),
            metric("/latency_us/p50", "p50", MicrosAsMillis, Lower),
            metric("/latency_us/p99", "p99", MicrosAsMillis, Lower),
            cpu,
        ],
        "llm" => vec![
            metric("/latency_us/p99", "p99", MicrosAsMillis, Lower),
            metric("/latency_us/p50", "p50", MicrosAsMillis, Lower),
            metric("/latency_us/p999", "p99.9", MicrosAsMillis, Lower),
            metric("/deliveries_per_sec", "deliveries/s", PerSec, Neither),
            cpu,
        ],
        "idle" => vec![
            metric(
                "/server/rss_per_connection_bytes",
                "RSS per connection",
                Bytes,
                Lower,
            ),
            metric("/connected", "connected", Count, Neither),
            metric("/errors", "errors", Count, Lower),
            metric(
                "/server/rss_after_connect_bytes",
                "server RSS",
                Bytes,
                Lower,
            ),
        ],
        "storm" => vec![
            metric("/connect/per_sec", "connections/s", PerSec, Higher),
            metric("/connect/p50_ms", "connect p50 (ms)", Millis, Lower),
            metric("/connect/p99_ms", "connect p99 (ms)", Millis, Lower),
            metric("/errors", "errors", Count, Lower),
            metric("/server/cpu_percent", "server CPU %", Count, Neither),
        ],
        _ => vec![
            metric("/connected", "held", Count, Neither),
            metric("/refused", "refused", Count, Neither),
            metric("/errors", "other errors", Count, Lower),
            metric("/missing", "missed by held clients", Count, Lower),
        ],
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    })
}

/// The median of `pointer` over the successful runs of (scenario, system).
fn value(runs: &[Run], scenario: &str, system: &str, pointer: &str) -> Option<f64> {
    median(
        runs.iter()
            .filter(|r| r.scenario == scenario && r.system == system)
            .filter_map(|r| r.result.as_ref()?.pointer(pointer)?.as_f64())
            .collect(),
    )
}

fn thousands(n: f64) -> String {
    // Rounded to a whole number first; the cast is what formatting needs.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = n.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn show(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "—".to_owned();
    };
    match unit {
        Unit::PerSec | Unit::Count => thousands(v),
        Unit::Micros => format!("{v:.2} µs"),
        Unit::MicrosAsMillis => format!("{:.2} ms", v / 1000.0),
        Unit::Millis => format!("{v:.0} ms"),
        Unit::Bytes if v >= 10.0 * 1024.0 * 1024.0 => format!("{:.0} MiB", v / 1024.0 / 1024.0),
        Unit::Bytes => format!("{:.1} KiB", v / 1024.0),
    }
}

/// `a / b` as a ratio, oriented so that > 1 means `a` is better.
fn ratio(a: Option<f64>, b: Option<f64>, better: Better) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => match better {
            Better::Higher => format!("{:.2}×", a / b),
            Better::Lower => format!("{:.2}×", b / a),
            Better::Neither => "—".to_owned(),
        },
        _ => "—".to_owned(),
    }
}

/// The generated part of `docs/benchmarks.md`.
pub(crate) fn markdown(outcome: &Outcome, context: &str) -> String {
    let runs = &outcome.runs;
    let mut md = String::new();
    md.push_str(context);
    for scenario in SCENARIOS {
        if !runs.iter().any(|r| r.scenario == scenario.key) {
            continue;
        }
        let metrics = metrics(scenario.key);
        let _ = writeln!(md, "\n### {}\n", scenario.title);
        let headline = &metrics[0];
        let comparable = headline.better != Better::Neither;
        md.push_str("| system |");
        for m in &metrics {
            let _ = write!(md, " {} |", m.label);
        }
        if comparable {
            md.push_str(" vs Node | vs socketioxide |");
        }
        md.push_str(" runs |\n|---|");
        for _ in &metrics {
            md.push_str("---:|");
        }
        if comparable {
            md.push_str("---:|---:|");
        }
        md.push_str("---:|\n");
        let node = value(runs, scenario.key, "node", headline.pointer);
        let sx = value(runs, scenario.key, "socketioxide", headline.pointer);
        for system in SYSTEMS {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.scenario == scenario.key && r.system == system.id)
                .collect();
            if mine.is_empty() {
                if let Some((_, why)) = scenario.skip.iter().find(|(id, _)| *id == system.id) {
                    let _ = writeln!(md, "| {} | n/a: {why} |", system.label);
                }
                continue;
            }
            let _ = write!(md, "| {} |", system.label);
            for m in &metrics {
                let _ = write!(
                    md,
                    " {} |",
                    show(value(runs, scenario.key, system.id, m.pointer), m.unit)
                );
            }
            if comparable {
                let v = value(runs, scenario.key, system.id, headline.pointer);
                let _ = write!(
                    md,
                    " {} | {} |",
                    ratio(v, node, headline.better),
                    ratio(v, sx, headline.better)
                );
            }
            let ok = mine.iter().filter(|r| r.problems.is_empty()).count();
            let _ = writeln!(md, " {ok}/{} |", mine.len());
        }
        let problems: Vec<String> = runs
            .iter()
            .filter(|r| r.scenario == scenario.key)
            .filter_map(|r| {
                let mut found = r.problems.clone();
                if found.is_empty() {
                    found = r
                        .result
                        .as_ref()?
                        .get("problems")?
                        .as_array()?
                        .iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect();
                }
                (!found.is_empty()).then(|| format!("- `{}`: {}", r.system, found.join("; ")))
            })
            .collect();
        if !problems.is_empty() {
            md.push_str("\nProblems reported:\n\n");
            md.push_str(&problems.join("\n"));
            md.push('\n');
        }
        if scenario.key == "limit" {
            let samples: Vec<String> = runs
                .iter()
                .filter(|r| r.scenario == "limit")
                .filter_map(|r| {
                    let codes = r.result.as_ref()?.get("refusal_codes")?;
                    Some(format!("- `{}`: {codes}", r.system))
                })
                .collect();
            if !samples.is_empty() {
                md.push_str("\nRefusals as the clients saw them:\n\n");
                md.push_str(&samples.join("\n"));
                md.push('\n');
            }
        }
    }
    md.push_str(&targets(runs));
    md
}

/// The issue's targets against the medians.
fn targets(runs: &[Run]) -> String {
    let v = |scenario: &str, system: &str, pointer: &str| value(runs, scenario, system, pointer);
    let dps = "/deliveries_per_sec";
    let cpu = "/server/cpu_us_per_delivery";
    let rss = "/server/rss_per_connection_bytes";
    let mut rows: Vec<(String, String, Option<bool>)> = Vec::new();
    let mut check = |target: &str, measured: String, met: Option<bool>| {
        rows.push((target.to_owned(), measured, met));
    };
    let ws = v("fanout", "sg-ws-json", dps);
    let sx = v("fanout", "socketioxide", dps);
    check(
        "(a) WebSocket ≥ 2× bare socketioxide deliveries/s",
        ratio(ws, sx, Better::Higher),
        ws.zip(sx).map(|(a, b)| a >= 2.0 * b),
    );
    let ws_cpu = v("fanout", "sg-ws-json", cpu);
    check(
        "(a) WebSocket ≤ 3.6 µs server CPU per delivery",
        show(ws_cpu, Unit::Micros),
        ws_cpu.map(|c| c <= 3.6),
    );
    let sio = v("fanout", "sg-socketio", dps);
    check(
        "(a) Socket.IO transport ≥ 0.9× bare socketioxide",
        ratio(sio, sx, Better::Higher),
        sio.zip(sx).map(|(a, b)| a >= 0.9 * b),
    );
    let sse_cpu = v("fanout", "sg-sse", cpu);
    check(
        "(a) SSE CPU per delivery within 1.5× of WebSocket's",
        sse_cpu
            .zip(ws_cpu)
            .map_or_else(|| "—".to_owned(), |(s, w)| format!("{:.2}×", s / w)),
        sse_cpu.zip(ws_cpu).map(|(s, w)| s <= 1.5 * w),
    );
    let p99 = v("fanout", "sg-ws-json", "/fixed_rate/latency_us/p99");
    check(
        "(a) p99 < 20 ms at 30,000 deliveries/s offered (WebSocket)",
        show(p99, Unit::MicrosAsMillis),
        p99.map(|p| p < 20_000.0),
    );
    let llm = v("llm", "sg-ws-json", "/latency_us/p99");
    check(
        "(c) p99 < 10 ms (WebSocket)",
        show(llm, Unit::MicrosAsMillis),
        llm.map(|p| p < 10_000.0),
    );
    let idle_ws = v("idle", "sg-ws-json", rss);
    check(
        "(d) ≤ 8 KiB server RSS per idle WebSocket connection",
        show(idle_ws, Unit::Bytes),
        idle_ws.map(|b| b <= 8192.0),
    );
    let idle_sio = v("idle", "sg-socketio", rss);
    let idle_sx = v("idle", "socketioxide", rss);
    check(
        "(d) Socket.IO RSS per connection ≤ socketioxide's",
        format!(
            "{} vs {}",
            show(idle_sio, Unit::Bytes),
            show(idle_sx, Unit::Bytes)
        ),
        idle_sio.zip(idle_sx).map(|(a, b)| a <= b),
    );
    let held = v("idle", "sg-ws-json", "/connected");
    let errors = v("idle", "sg-ws-json", "/errors");
    check(
        "(d) 19,000 idle connections held without error (WebSocket)",
        format!(
            "{} held, {} errors",
            show(held, Unit::Count),
            show(errors, Unit::Count)
        ),
        held.zip(errors).map(|(h, e)| h >= 19_000.0 && e == 0.0),
    );
    let refused = v("limit", "sg-ws-json", "/refused");
    let missing = v("limit", "sg-ws-json", "/missing");
    check(
        "past the descriptor limit: refused with SERVER_OVERLOADED, the rest served",
        format!(
            "{} refused, {} missed by the held clients",
            show(refused, Unit::Count),
            show(missing, Unit::Count)
        ),
        refused.zip(missing).map(|(r, m)| r > 0.0 && m == 0.0),
    );
    let mut md = String::from("\n### Targets\n\n| target | measured | |\n|---|---:|---|\n");
    for (target, measured, met) in rows {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {target} | {measured} | {verdict} |");
    }
    md
}

/// Colours of the systems in the plot, in [`SYSTEMS`] order.
const COLOURS: &[&str] = &[
    "#1f77b4", "#6baed6", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728",
];

/// A bar chart per headline metric, one bar per system.
pub(crate) fn svg(outcome: &Outcome) -> String {
    let panels: Vec<(&str, &str, &str, Unit)> = vec![
        (
            "fanout",
            "/deliveries_per_sec",
            "(a) fan-out to 10,000: deliveries/s (higher is better)",
            Unit::PerSec,
        ),
        (
            "fanout",
            "/server/cpu_us_per_delivery",
            "(a) server CPU per delivery, µs (lower is better)",
            Unit::Micros,
        ),
        (
            "fanout",
            "/fixed_rate/latency_us/p99",
            "(a) p99 at 30,000 deliveries/s, ms (lower is better)",
            Unit::MicrosAsMillis,
        ),
        (
            "chat",
            "/latency_us/p99",
            "(b) chat p99, ms (lower is better)",
            Unit::MicrosAsMillis,
        ),
        (
            "llm",
            "/latency_us/p99",
            "(c) LLM streams p99, ms (lower is better)",
            Unit::MicrosAsMillis,
        ),
        (
            "idle",
            "/server/rss_per_connection_bytes",
            "(d) RSS per idle connection, KiB (lower is better)",
            Unit::Bytes,
        ),
        (
            "storm",
            "/connect/per_sec",
            "(e) connect storm: connections/s (higher is better)",
            Unit::PerSec,
        ),
    ];
    let width = 960.0;
    let label_w = 250.0;
    let bar_h = 16.0;
    let panel_h = 40.0 + bar_h * 1.25 * 6.0;
    let mut body = String::new();
    let mut y = 10.0;
    for (scenario, pointer, title, unit) in panels {
        let values: Vec<(usize, f64)> = SYSTEMS
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, value(&outcome.runs, scenario, s.id, pointer)?)))
            .collect();
        if values.is_empty() {
            continue;
        }
        let max = values
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0_f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{:.0}" font-size="14" font-weight="bold">{}</text>"#,
            y + 16.0,
            escape(title)
        );
        let mut row = y + 28.0;
        for (i, v) in values {
            let w = (width - label_w - 120.0) * v / max;
            let _ = writeln!(
                body,
                r#"<text x="{:.0}" y="{:.0}" font-size="12" text-anchor="end">{}</text><rect x="{label_w:.0}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{}"/><text x="{:.0}" y="{:.0}" font-size="12">{}</text>"#,
                label_w - 6.0,
                row + 12.0,
                escape(SYSTEMS[i].label),
                row,
                bar_h,
                COLOURS[i % COLOURS.len()],
                label_w + w + 6.0,
                row + 12.0,
                escape(&show(Some(v), unit))
            );
            row += bar_h * 1.25;
        }
        y += panel_h;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        y + 10.0
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ratio(Some(2.0), Some(1.0), Better::Higher), "2.00×");
        assert_eq!(ratio(Some(2.0), Some(1.0), Better::Lower), "0.50×");
        assert_eq!(show(Some(2048.0), Unit::Bytes), "2.0 KiB");
    }
}
