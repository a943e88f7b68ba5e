//! A three-node cluster: one simulated cluster (`pve1`, `pve2`, `pve3` behind one API),
//! one desired-state file shared by three agents, each with its own config (its own
//! `node`) and its own state directory, as when the file lives in `/etc/pve`. Asserted
//! on the node's request log: which node each request named, in what order and when.

mod controls;
mod converge;
mod plan;

use super::config::TempDir;
use super::rig::{fast_sim, running};
use felhom_agent::agent::{self, Agent};
use felhom_agent::cancel::CancelSource;
use felhom_agent::desired::DesiredState;
use felhom_agent::engine::{Engine, PassReport};
use felhom_agent::journal::Journal;
use felhom_agent::sim::{PowerState, RequestRecord, Sim, SimGuest, SimOptions};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];

/// The simulated cluster and the three agents' files.
pub struct Cluster {
    pub sim: Sim,
    pub dir: TempDir,
}

/// A container on `node` named `ct<vmid>`, with 1 core, 512 MiB memory and swap.
pub fn ct(vmid: u32, node: &str, running: bool) -> SimGuest {
    let mut g = super::rig::guest(vmid, running);
    g.node = node.to_string();
    g
}

/// Three nodes, fast tasks.
pub fn three_nodes() -> SimOptions {
    SimOptions {
        nodes: NODES.iter().map(|n| n.to_string()).collect(),
        ..fast_sim()
    }
}

impl Cluster {
    /// The cluster with `guests`, `desired` in one shared file, and a config per node;
    /// `extra` keys go into every config.
    pub fn new(
        tag: &str,
        opts: SimOptions,
        guests: Vec<SimGuest>,
        desired: &str,
        extra: serde_json::Value,
    ) -> Cluster {
        let sim = Sim::start(opts).expect("sim starts");
        for g in guests {
            sim.add_guest(g);
        }
        let c = Cluster {
            sim,
            dir: TempDir::new(tag),
        };
        c.dir.write("token.secret", c.sim.token_secret(), 0o600);
        c.write_desired(desired);
        c.write_configs(extra);
        c
    }

    /// Rewrites every node's config, with `extra` keys over the defaults.
    pub fn write_configs(&self, extra: serde_json::Value) {
        for node in NODES {
            let mut config = serde_json::json!({
                "api_url": self.sim.url(),
                "node": node,
                "token_id": self.sim.token_id(),
                "token_secret_file": self.dir.path().join("token.secret"),
                "desired_file": self.dir.path().join("desired.json"),
                "state_dir": self.dir.path().join(format!("state-{node}")),
                "interval_secs": 3600,
                "shutdown_timeout_secs": 5,
                "task_timeout_secs": 40,
            });
            for (k, v) in extra.as_object().into_iter().flatten() {
                config[k] = v.clone();
            }
            self.dir
                .write(&format!("config-{node}.json"), config.to_string(), 0o644);
        }
    }

    pub fn write_desired(&self, desired: &str) {
        self.dir.write("desired.json", desired, 0o644);
    }

    pub fn config(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("config-{node}.json"))
    }

    /// The desired state, as every agent loads it.
    pub fn desired(&self) -> DesiredState {
        agent::load(&self.config(NODES[0]))
            .expect("config loads")
            .desired
    }

    /// Node `node`'s agent, built the way `once` builds it: recovery, then its engine.
    pub fn agent(&self, node: &str) -> NodeAgent {
        let loaded = agent::load(&self.config(node)).expect("config loads");
        let cancel = CancelSource::new();
        let built = Agent::start(&loaded, &cancel.token()).expect("the agent starts");
        built.recover(&cancel.token()).expect("recovery");
        let engine = built.engine(&loaded.config.live, cancel.token(), None);
        NodeAgent {
            node: node.to_string(),
            engine,
            journal: built.journal,
            cancel,
        }
    }

    /// Every node's agent.
    pub fn agents(&self) -> Vec<NodeAgent> {
        NODES.iter().map(|n| self.agent(n)).collect()
    }

    /// The real binary with node `node`'s config.
    pub fn bin(&self, node: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .args(args)
            .arg("--config")
            .arg(self.config(node))
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("binary runs")
    }

    /// The node a guest lives on now.
    pub fn home(&self, vmid: u32) -> String {
        self.sim.guest(vmid).expect("the guest exists").node
    }
}

/// One node's agent, in process.
pub struct NodeAgent {
    pub node: String,
    pub engine: Engine,
    pub journal: Journal,
    pub cancel: CancelSource,
}

impl NodeAgent {
    /// One pass, waited for.
    pub fn pass(&mut self, desired: &DesiredState) -> PassReport {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.engine.run_pass(desired, deadline).1
    }

    /// Shuts the engine down and closes the journal.
    pub fn stop(mut self) {
        let cancel = &mut self.cancel;
        self.engine.shutdown(Instant::now(), || cancel.cancel());
        self.journal.close().expect("the journal closes");
    }
}

/// One pass of every agent at the same time, each on its own named thread; the reports
/// in the agents' order.
pub fn passes(agents: &mut [NodeAgent], desired: &DesiredState) -> Vec<PassReport> {
    std::thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter_mut()
            .map(|a| {
                std::thread::Builder::new()
                    .name(format!("agent {}", a.node))
                    .spawn_scoped(s, || a.pass(desired))
                    .expect("thread starts")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a pass does not panic"))
            .collect()
    })
}

/// The requests the node saw about guest `vmid`, as `METHOD /nodes/..` lines.
pub fn requests_for(sim: &Sim, vmid: u32) -> Vec<String> {
    lines(sim.requests().iter().filter(|r| r.vmid == Some(vmid)))
}

/// The mutating requests about guest `vmid`, as `METHOD /nodes/..` lines.
pub fn mutations_for(sim: &Sim, vmid: u32) -> Vec<String> {
    lines(sim.mutations().iter().filter(|r| r.vmid == Some(vmid)))
}

fn lines<'a>(records: impl Iterator<Item = &'a RequestRecord>) -> Vec<String> {
    records
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The skip classes of a report, by vmid.
pub fn skips(report: &PassReport) -> Vec<(u32, String)> {
    report
        .skipped
        .iter()
        .map(|s| (s.vmid.get(), s.class.clone()))
        .collect()
}
