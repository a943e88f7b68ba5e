//! The seeded crash soak: the real agent under faults, killed with SIGKILL at random
//! moments across many passes and restarted each time. After every kill the journal
//! must open; at the end the fleet must converge, and the node's own audit (checked
//! again when the `Sim` drops) must show no guest with two actions in flight and no
//! intent sent twice.
//!
//! `./build.sh test` runs a short soak; `./build.sh soak` a long one. Both print the
//! seed, the kills and the result; `FELHOM_SOAK_SEED` reruns one, `FELHOM_SOAK_KILLS`
//! sets the number of kills.

use super::agent::Agent;
use super::rig::{fast_sim, guest, Rig};
use felhom_agent::rng::XorShift;
use felhom_agent::sim::{
    Effect, FaultRule, Faults, Garble, Match, PowerState, SimGuest, SimOptions,
};
use std::time::{Duration, Instant};

const GUESTS: u32 = 10;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// Faults on every kind of request, drawn from the node's seeded generator.
fn faults() -> Faults {
    let any = Match::any;
    let post = || Match::method("POST");
    let get = || Match::method("GET");
    Faults::rule(FaultRule::new(any(), Effect::Reset).rate(0.03))
        .with(FaultRule::new(get(), Effect::StatusBefore(500)).rate(0.05))
        .with(FaultRule::new(get(), Effect::Html).rate(0.02))
        .with(FaultRule::new(get(), Effect::Truncate(40)).rate(0.02))
        .with(FaultRule::new(get(), Effect::Garble(Garble::WrongType)).rate(0.02))
        .with(FaultRule::new(post(), Effect::StatusAfter(596)).rate(0.08))
        .with(FaultRule::new(post(), Effect::StatusAfter(502)).rate(0.04))
        .with(FaultRule::new(post(), Effect::Truncate(10)).rate(0.04))
        .with(FaultRule::new(post(), Effect::Delay(Duration::from_millis(900))).rate(0.1))
        .with(FaultRule::new(Match::method("PUT"), Effect::StatusAfter(504)).rate(0.1))
}

/// A random fleet and a random desired state for it.
fn fleet(rng: &mut XorShift) -> (Vec<SimGuest>, serde_json::Value) {
    let mut guests = Vec::new();
    let mut desired = Vec::new();
    for vmid in 101..101 + GUESTS {
        guests.push(guest(vmid, rng.chance(0.5)));
        let mut want = serde_json::json!({"vmid": vmid});
        if rng.chance(0.8) {
            want["state"] = if rng.chance(0.5) {
                "running"
            } else {
                "stopped"
            }
            .into();
        }
        if rng.chance(0.5) {
            want["cores"] = (1 + rng.below(4)).into();
        }
        if rng.chance(0.5) {
            want["memory"] = (256 * (1 + rng.below(8))).into();
        }
        desired.push(want);
    }
    (guests, serde_json::json!({ "guests": desired }))
}

/// Whether the node holds what `desired` asks for.
fn converged(sim: &felhom_agent::sim::Sim, desired: &serde_json::Value) -> bool {
    desired["guests"].as_array().unwrap().iter().all(|want| {
        let g = sim.guest(want["vmid"].as_u64().unwrap() as u32).unwrap();
        let state_ok = match want["state"].as_str() {
            Some("running") => g.status == PowerState::Running,
            Some("stopped") => g.status == PowerState::Stopped,
            _ => true,
        };
        let cores_ok = want["cores"]
            .as_u64()
            .is_none_or(|c| g.cores == Some(c as u32));
        let memory_ok = want["memory"].as_u64().is_none_or(|m| g.memory == Some(m));
        state_ok && cores_ok && memory_ok
    })
}

fn soak(seed: u64, kills: u64) {
    eprintln!("soak: seed {seed}, {kills} kills (FELHOM_SOAK_SEED={seed} reruns it)");
    let mut rng = XorShift::new(seed);
    let (guests, mut desired) = fleet(&mut rng);
    let opts = SimOptions {
        seed,
        task_duration: Duration::from_millis(150),
        shutdown_duration: Duration::from_millis(200),
        ..fast_sim()
    };
    let rig = Rig::new(
        "soak",
        opts,
        guests,
        &desired.to_string(),
        serde_json::json!({"interval_secs": 1, "unanswered_grace_secs": 5}),
    );
    rig.sim.set_faults(faults());
    let started = Instant::now();
    for kill in 0..kills {
        let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
        // Kill after a random number of log lines (an action started, applied, a pass,
        // recovery...), or after a random while if the agent is quiet. Now and then the
        // agent gets long enough for an unanswered op's grace (5 s, restarted by every
        // restart) to run out, so that the soak also makes progress.
        let lines = 1 + rng.below(16) as usize;
        let quiet = if rng.chance(0.3) {
            Duration::from_millis(6000 + rng.below(3000))
        } else {
            Duration::from_millis(100 + rng.below(1500))
        };
        let seen = agent.wait_lines(lines, quiet);
        agent.kill9();
        // The journal opens after every kill (read-only, as an operator would look).
        let out = rig.bin(&["journal", "--in-flight", "--json"]);
        assert!(
            out.status.success(),
            "kill {kill}: the journal does not open: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let in_flight: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!(
            "soak: kill {kill} after {seen} lines; {} ops in flight",
            in_flight.as_array().unwrap().len()
        );
        if std::env::var("FELHOM_SOAK_VERBOSE").is_ok() {
            eprintln!("{in_flight}\n{}", agent.seen.join("\n"));
        }
        // Now and then the operator changes the desired state between runs.
        if rng.chance(0.15) {
            let (_, next) = fleet(&mut rng);
            desired = next;
            rig.write_desired(&desired.to_string());
            eprintln!("soak: desired state changed");
        }
    }
    // Faults off: the last agent must converge the fleet.
    rig.sim.set_faults(Faults::default());
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", Duration::from_secs(60));
    let ok = rig.sim.wait_until(Duration::from_secs(60), |s| {
        converged(s, &desired) && s.running_tasks() == 0
    });
    agent.signal(super::agent::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(60));
    let audit = rig.sim.audit();
    eprintln!(
        "soak: {kills} kills in {:.1} s; converged: {ok}; {} mutating requests checked; {} violations",
        started.elapsed().as_secs_f64(),
        audit.checked,
        audit.violations.len()
    );
    assert!(audit.is_clean(), "{audit}");
    assert!(
        ok,
        "the fleet did not converge; stderr:\n{}",
        agent.seen.join("\n")
    );
    assert!(status.success());
}

#[test]
fn crash_soak() {
    let seed = env_u64("FELHOM_SOAK_SEED").unwrap_or(0x5eed_50a4);
    let kills = env_u64("FELHOM_SOAK_KILLS").unwrap_or(10);
    soak(seed, kills);
}
