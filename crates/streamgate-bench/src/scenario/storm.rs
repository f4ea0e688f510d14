//! `storm`: `--connections` clients started at once, each with its own token; a client counts
//! as connected once authenticated and joined.

use std::rc::Rc;

use anyhow::Result;

use super::{connect_all, finish, listeners, pair, param, samples, tokens};
use crate::Run;
use crate::stats::{Stats, Sub};

/// Runs the scenario.
pub(crate) async fn run(run: &Rc<Run>) -> Result<()> {
    let n = run.args.connections.unwrap_or(10_000);
    param(run, "connections", n);
    let stats = Rc::new(Stats::new(1, false));
    let tokens = tokens(run, 0..n)?;
    let subs: Vec<Rc<Sub>> = (0..n).map(|_| Rc::new(Sub::default())).collect();
    let specs = listeners(&subs, tokens);
    let (s0, g0) = samples(run);
    connect_all(run, &stats, specs, None).await;
    let (s1, g1) = samples(run);
    {
        let mut report = run.report.borrow_mut();
        let connected = report.connected;
        if let (Some(server), Some((a, b))) = (report.server.as_mut(), pair(s0, s1)) {
            server.cpu_percent = Some(a.cpu_percent(&b));
            server.cpu_us = Some(a.cpu_us_until(&b));
            server.rss_bytes = Some(b.rss);
            // Per delivery makes no sense here: this is CPU µs per connection.
            server.cpu_us_per_delivery = None;
            server.cpu_us_per_connection = (connected > 0)
                .then(|| crate::probe::round1(a.cpu_us_until(&b) as f64 / connected as f64));
        }
        if let (Some(g), Some((a, b))) = (report.generator.as_mut(), pair(g0, g1)) {
            g.cpu_percent = Some(a.cpu_percent(&b));
            g.cpu_wait_percent = Some(a.wait_percent(&b));
            g.rss_bytes = Some(b.rss);
        }
    }
    finish(run, &stats, &subs, false);
    Ok(())
}
