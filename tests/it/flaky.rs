//! Converging through a flaky API: a guest whose read keeps failing costs that guest,
//! not the pass, and says why and until when; garbage from the node never causes an
//! action. Asserted on what the node saw.

use super::rig::{fast_sim, guest, mutations_of, pass, Rig};
use felhom_agent::sim::{Effect, FaultRule, Faults, Garble, Match};

#[test]
fn a_guest_whose_config_cannot_be_read_backs_off_alone_and_says_why() {
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running", "description": "a"},
        {"vmid": 102, "state": "running", "description": "b"}]}"#;
    let rig = Rig::new(
        "flaky-one-guest",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        desired,
        serde_json::json!({}),
    );
    // Every read of 101's config fails, retries included.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::get("/config").vmid(101),
        Effect::StatusBefore(500),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let report = pass(&mut engine, &desired);
    // 102 converged in the same pass; 101 got nothing.
    assert_eq!(mutations_of(&rig.sim, 102), ["PUT config", "POST start"]);
    assert!(mutations_of(&rig.sim, 101).is_empty());
    let skip = report.skipped.iter().find(|s| s.vmid.get() == 101).unwrap();
    assert_eq!(skip.class, "backoff", "{report:?}");
    assert!(
        skip.reason.starts_with("in backoff until 20")
            && skip.reason.contains("cannot read its config: ")
            && skip.reason.contains("http 500"),
        "{}",
        skip.reason
    );
    // Held while backing off: no further read of its config.
    rig.sim.clear_requests();
    let report = pass(&mut engine, &desired);
    assert!(report
        .skipped
        .iter()
        .any(|s| s.vmid.get() == 101 && s.class == "backoff"));
    assert!(!rig.sim.requests().iter().any(|r| r.path.contains("/101/")));
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn garbage_from_the_node_never_causes_an_action() {
    // Everything already converged: any mutation would be acting on garbage.
    let guests: Vec<_> = (101..=108).map(|v| guest(v, v % 2 == 0)).collect();
    let desired = serde_json::json!({"guests": (101..=108)
        .map(|v| serde_json::json!({"vmid": v, "state": if v % 2 == 0 { "running" } else { "stopped" },
                                     "memory": 512, "cores": 1}))
        .collect::<Vec<_>>()});
    let rig = Rig::new(
        "flaky-garbage",
        fast_sim(),
        guests,
        &desired.to_string(),
        serde_json::json!({}),
    );
    let get = || Match::method("GET");
    rig.sim.set_faults(
        Faults::rule(FaultRule::new(get(), Effect::Html).rate(0.1))
            .with(FaultRule::new(get(), Effect::Garble(Garble::WrongType)).rate(0.1))
            .with(FaultRule::new(get(), Effect::Garble(Garble::Missing("status".into()))).rate(0.1))
            .with(FaultRule::new(get(), Effect::Garble(Garble::SwapType("vmid".into()))).rate(0.1))
            .with(FaultRule::new(get(), Effect::Garble(Garble::Missing("maxmem".into()))).rate(0.1))
            .with(FaultRule::new(get(), Effect::Truncate(30)).rate(0.1))
            .with(FaultRule::new(get(), Effect::Huge(20 << 20)).rate(0.05)),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    for _ in 0..60 {
        let report = pass(&mut engine, &desired);
        assert_eq!(report.planned, 0, "{report:?}");
    }
    assert!(rig.sim.mutations().is_empty(), "{:?}", rig.sim.mutations());
    assert!(
        rig.sim.fault_hits().iter().all(|n| *n > 0),
        "{:?}",
        rig.sim.fault_hits()
    );
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}
