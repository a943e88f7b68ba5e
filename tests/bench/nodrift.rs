//! What a pass with nothing to do costs (scenario 3): `n` managed containers in sync for
//! state, memory, swap and tags, beside `n` unmanaged ones, through the real engine in
//! this process against the plain-http simulated node.
//!
//! The engine's first pass reads every managed config (so does every
//! `FULL_READ_EVERY`-th); the passes between trust the node's list for what it shows.

use crate::rig::{guest, sim_options, Node};
use crate::table::{Row, Target, Unit};
use felhom_agent::engine::FULL_READ_EVERY;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match};
use std::path::Path;
use std::time::Duration;

/// How long every request takes in the slow variant: what a real node's API costs at
/// least per call over TLS.
const SLOW: Duration = Duration::from_millis(5);

fn fleet(n: u32) -> (Vec<felhom_agent::sim::SimGuest>, serde_json::Value) {
    let mut guests = Vec::new();
    let mut desired = Vec::new();
    for i in 0..n {
        let vmid = 1000 + i;
        let mut g = guest(vmid, i % 2 == 0);
        g.tags = Some("prod".into());
        guests.push(g);
        guests.push(guest(1000 + n + i, i % 3 == 0));
        desired.push(serde_json::json!({
            "vmid": vmid,
            "state": if i % 2 == 0 { "running" } else { "stopped" },
            "memory": 512, "swap": 512, "tags": ["prod"]
        }));
    }
    (guests, serde_json::json!({ "guests": desired }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `n` managed plus `n` unmanaged guests; `later` passes after the first.
pub fn no_drift(root: &Path, n: u32, later: usize) -> Vec<Row> {
    let later = later.min(FULL_READ_EVERY as usize - 1);
    let (guests, desired) = fleet(n);
    let node = Node::new(
        root,
        "nodrift",
        sim_options(Duration::from_millis(50)),
        guests,
        &desired,
        serde_json::json!({}),
    );
    let pass_in_sync = |engine: &mut crate::rig::InProcess| {
        node.sim.clear_requests();
        let (report, took) = engine.pass(Duration::from_secs(120));
        assert_eq!(
            (report.planned, report.in_sync.len(), report.ok()),
            (0, n as usize, true),
            "{report:?}"
        );
        (took.as_secs_f64(), node.sim.requests().len())
    };

    let mut engine = node.engine();
    let (full_secs, full_requests) = pass_in_sync(&mut engine);
    let mut times = Vec::new();
    let mut most = 0;
    let mut fewest = usize::MAX;
    for _ in 0..later {
        let (secs, requests) = pass_in_sync(&mut engine);
        times.push(secs);
        most = most.max(requests);
        fewest = fewest.min(requests);
    }
    engine.close();

    // A fresh engine, whose first pass reads every config, with every request late.
    node.sim.set_faults(Faults::rule(FaultRule::new(
        Match::any(),
        Effect::Delay(SLOW),
    )));
    let mut engine = node.engine();
    let (slow_full_secs, slow_full_requests) = pass_in_sync(&mut engine);
    let (slow_secs, _) = pass_in_sync(&mut engine);
    engine.close();
    node.sim.set_faults(Faults::default());
    node.finish();

    let who = format!("{n} managed + {n} unmanaged containers");
    let late = format!("every request {} ms late", SLOW.as_millis());
    vec![
        Row::new(
            "3",
            format!("no-drift pass, {who}: the first pass, reading every config"),
            Unit::Secs,
            full_secs,
        )
        .target(Target::Below(0.5))
        .detail(format!(
            "the real engine in this process against the plain-http simulated node; the managed ones in sync for state, memory, swap and tags; {full_requests} requests"
        )),
        Row::new(
            "3",
            "no-drift pass: requests per later pass",
            Unit::Count,
            most as f64,
        )
        .target(Target::Exactly(2.0))
        .detail(format!(
            "the most over the {later} passes after the first (the fewest: {fewest}), from the node's request log"
        )),
        Row::new("3", "no-drift pass: a later pass", Unit::Secs, median(times))
            .target(Target::Below(0.5))
            .detail(format!("median of the {later} passes after the first")),
        Row::new(
            "3",
            format!("no-drift pass, {late}: the pass reading every config"),
            Unit::Secs,
            slow_full_secs,
        )
        .target(Target::Below(2.5))
        .detail(format!(
            "a fault rule Effect::Delay({} ms) on every request; a fresh engine, whose first pass reads every config (as every {FULL_READ_EVERY}th does): {slow_full_requests} requests",
            SLOW.as_millis()
        )),
        Row::new(
            "3",
            format!("no-drift pass, {late}: a later pass"),
            Unit::Secs,
            slow_secs,
        ),
    ]
}
