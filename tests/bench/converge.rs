//! Convergence against its physical floor (scenarios 1 and 2): with at most
//! `max_parallel` tasks in flight, a fleet cannot converge faster than its tasks take
//! when packed onto that many lanes. Each run is one pass of the real engine, in this
//! process, against a fresh simulated node, timed from the start of the pass (the node
//! read included) until its last job reports.

use crate::rig::{guest, sim_options, Node};
use crate::table::{Row, Target, Unit};
use felhom_agent::sim::RequestRecord;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Scenario 1's sizes.
pub struct Waves {
    pub guests: u32,
    pub task: Duration,
    pub max_parallel: u32,
    pub runs: usize,
}

/// Status polls of each task, by UPID, from the node's request log.
fn polls_by_task(requests: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut polls: BTreeMap<String, usize> = requests
        .iter()
        .filter_map(|r| r.task.clone())
        .map(|upid| (upid, 0))
        .collect();
    for r in requests {
        if r.method != "GET" {
            continue;
        }
        let Some(upid) = r
            .path
            .split_once("/tasks/")
            .and_then(|(_, rest)| rest.strip_suffix("/status"))
        else {
            continue;
        };
        *polls.entry(upid.to_string()).or_default() += 1;
    }
    polls
}

/// Where a pass's time went, read from the node's request log.
struct Timeline {
    /// From the start of the pass to its first mutation: reading the node.
    read: Duration,
    /// Per task type: how late the agent saw its tasks end (the answer to its last
    /// status poll, less the task's end), in ms: each task's figure.
    late: BTreeMap<String, Vec<f64>>,
}

fn timeline(requests: &[RequestRecord], start: Instant, task: Duration) -> Timeline {
    let first = requests
        .iter()
        .filter(|r| r.mutating)
        .map(|r| r.at)
        .min()
        .unwrap_or(start);
    let mut last_poll: BTreeMap<&str, Instant> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.method == "GET") {
        if let Some(upid) = r
            .path
            .split_once("/tasks/")
            .and_then(|(_, rest)| rest.strip_suffix("/status"))
        {
            let done = r.done.unwrap_or(r.at);
            let e = last_poll.entry(upid).or_insert(done);
            *e = (*e).max(done);
        }
    }
    let mut late: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in requests {
        let (Some(upid), Some(done)) = (r.task.as_deref(), r.done) else {
            continue;
        };
        let Some(seen) = last_poll.get(upid) else {
            continue;
        };
        // UPID:node:pid:pstart:starttime:type:id:user:
        let kind = upid.split(':').nth(5).unwrap_or("?").to_string();
        let ended = done + task;
        let ms = seen.saturating_duration_since(ended).as_secs_f64() * 1000.0;
        late.entry(kind).or_default().push(ms);
    }
    Timeline {
        read: first.saturating_duration_since(start),
        late,
    }
}

impl Timeline {
    fn describe(&self) -> String {
        let late: Vec<String> = self
            .late
            .iter()
            .map(|(kind, v)| {
                let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
                let most = v.iter().copied().fold(0.0, f64::max);
                format!(
                    "{kind} mean {mean:.0} ms (most {most:.0} ms, {} tasks)",
                    v.len()
                )
            })
            .collect();
        format!(
            "reading the node before the first mutation: {:.2} s; each task seen ended late by {}",
            self.read.as_secs_f64(),
            late.join(", ")
        )
    }
}

/// Scenario 1: `guests` stopped containers to start, each start task taking `task`,
/// at most `max_parallel` at once. Floor: ceil(guests / max_parallel) x task. A fresh
/// node and engine per run (so the first wave pays the task-time prior, as a freshly
/// started agent does); the median run's time, and the most status polls any task got
/// over all runs.
pub fn waves(root: &Path, w: &Waves) -> Vec<Row> {
    let mut times = Vec::new();
    let mut polls = Vec::new();
    for run in 0..w.runs {
        let guests = (0..w.guests).map(|i| guest(100 + i, false)).collect();
        let desired = serde_json::json!({"guests": (0..w.guests)
            .map(|i| serde_json::json!({"vmid": 100 + i, "state": "running"}))
            .collect::<Vec<_>>()});
        let node = Node::new(
            root,
            &format!("waves-{run}"),
            sim_options(w.task),
            guests,
            &desired,
            serde_json::json!({"max_parallel": w.max_parallel}),
        );
        let mut engine = node.engine();
        let start = Instant::now();
        let (report, took) = engine.pass(Duration::from_secs(600));
        assert!(
            report.ok() && report.applied == w.guests as usize,
            "{report:?}"
        );
        engine.close();
        let requests = node.sim.requests();
        times.push((took.as_secs_f64(), timeline(&requests, start, w.task)));
        polls.extend(polls_by_task(&requests).into_values());
        node.finish();
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, median_timeline) = &times[times.len() / 2];
    let floor = f64::from(w.guests.div_ceil(w.max_parallel)) * w.task.as_secs_f64();
    let most = polls.iter().copied().max().unwrap_or(0);
    let mean = polls.iter().sum::<usize>() as f64 / polls.len().max(1) as f64;
    let mut spread: BTreeMap<usize, usize> = BTreeMap::new();
    for p in &polls {
        *spread.entry(*p).or_default() += 1;
    }
    let spread: Vec<String> = spread
        .iter()
        .map(|(p, n)| format!("{n} tasks {p}"))
        .collect();
    let runs: Vec<String> = times.iter().map(|(t, _)| format!("{t:.2}")).collect();
    vec![
        Row::new(
            "1",
            format!(
                "convergence: {} stopped containers to start, {} tasks, max_parallel {}",
                w.guests,
                secs(w.task),
                w.max_parallel
            ),
            Unit::Secs,
            *median,
        )
        .floor(floor, 1.10)
        .detail(format!(
            "one pass of the real engine in this process, from its start (the node read included) to its last result; a fresh node and engine each run, so the first wave waits with the task-time prior; median of {} runs ({} s); floor ceil({} / {}) x {}; in the median run, {}",
            w.runs,
            runs.join(", "),
            w.guests,
            w.max_parallel,
            secs(w.task),
            median_timeline.describe()
        )),
        Row::new(
            "1",
            "status polls per task, most of any task",
            Unit::Count,
            most as f64,
        )
        .target(Target::AtMost(6.0))
        .detail(format!(
            "GET .../tasks/<upid>/status in the node's request log, per task started, over all runs: {} tasks, mean {mean:.2}; {} polls",
            polls.len(),
            spread.join(", ")
        )),
    ]
}

/// A duration for people: `1 s`, `0.2 s`, `50 ms`.
fn secs(d: Duration) -> String {
    if d < Duration::from_millis(100) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Scenario 2's sizes.
pub struct Mixed {
    pub guests: u32,
    pub task: Duration,
    pub max_parallel: u32,
}

/// Scenario 2: a mixed fleet in four equal parts: stopped to start; running to shut
/// down; stopped to start with new cores and memory (a config update, then a start);
/// running with new cores and memory (a config update only). Start and shutdown tasks
/// take `task`; a container's config update is synchronous (no task). Floor: the
/// longer of the longest single guest's chain of tasks and all task-seconds spread
/// over `max_parallel` lanes.
pub fn mixed(root: &Path, m: &Mixed) -> Vec<Row> {
    let mut guests = Vec::new();
    let mut desired = Vec::new();
    let mut tasks = 0u32;
    for i in 0..m.guests {
        let vmid = 100 + i;
        let (running, want) = match i % 4 {
            0 => (false, serde_json::json!({"vmid": vmid, "state": "running"})),
            1 => (true, serde_json::json!({"vmid": vmid, "state": "stopped"})),
            2 => (
                false,
                serde_json::json!({"vmid": vmid, "state": "running", "cores": 2, "memory": 1024}),
            ),
            _ => (
                true,
                serde_json::json!({"vmid": vmid, "state": "running", "cores": 2, "memory": 1024}),
            ),
        };
        tasks += u32::from(i % 4 != 3);
        guests.push(guest(vmid, running));
        desired.push(want);
    }
    let desired = serde_json::json!({ "guests": desired });
    let node = Node::new(
        root,
        "mixed",
        sim_options(m.task),
        guests,
        &desired,
        serde_json::json!({"max_parallel": m.max_parallel, "stop_mode": "shutdown"}),
    );
    let mut engine = node.engine();
    let start = Instant::now();
    let (report, took) = engine.pass(Duration::from_secs(600));
    assert!(report.ok(), "{report:?}");
    engine.close();
    assert!(crate::rig::converged(&node.sim, &desired));
    let requests = node.sim.requests();
    let spent = timeline(&requests, start, m.task);
    let started = requests.iter().filter(|r| r.task.is_some()).count();
    assert_eq!(started, tasks as usize, "the tasks the floor counts");
    let updates = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/config"))
        .count();
    node.finish();
    let d = m.task.as_secs_f64();
    // At most one task per guest; a container's config update adds no task.
    let chain = d;
    let floor = chain.max(f64::from(tasks) * d / f64::from(m.max_parallel));
    let n = m.guests / 4;
    vec![Row::new(
        "2",
        format!(
            "convergence at scale: {} containers, {} tasks, max_parallel {}, mixed actions",
            m.guests,
            secs(m.task),
            m.max_parallel
        ),
        Unit::Secs,
        took.as_secs_f64(),
    )
    .floor(floor, 1.25)
    .detail(format!(
        "one pass of the real engine in this process; {n} to start, {n} to shut down, {n} to update (cores, memory) and start, {n} to update while running: {started} tasks, {updates} config updates (synchronous, no task), {} requests; floor max(longest chain {}, {started} x {} / {}); {}",
        requests.len(),
        secs(m.task),
        secs(m.task),
        m.max_parallel,
        spent.describe()
    ))]
}

/// The planner alone over `n` guests (reported only): median of `runs`.
pub fn planner(n: u32, runs: usize) -> Row {
    use felhom_agent::desired::{DesiredState, GuestSpec, RunState};
    use felhom_agent::plan::{self, Actual, ActualGuest, ActualSpec, PlanSettings};
    use felhom_agent::pve::{GuestKind, PowerState, Vmid};
    let mut desired = DesiredState::default();
    let mut observed = Actual::default();
    for i in 0..n {
        let v = Vmid::new((100 + i).into()).unwrap();
        let mut spec = GuestSpec::new(v);
        spec.state = Some(if i % 2 == 0 {
            RunState::Running
        } else {
            RunState::Stopped
        });
        spec.memory = Some(1024);
        spec.cores = Some(2);
        spec.tags = Some(vec!["prod".into(), "web".into()]);
        spec.description = Some("bench guest\n".into());
        desired.guests.insert(v, spec);
        observed.local.insert(
            v,
            ActualGuest {
                tags: None,
                kind: GuestKind::Lxc,
                vm_power: None,
                vmid: v,
                name: None,
                status: if i % 3 == 0 {
                    PowerState::Running
                } else {
                    PowerState::Stopped
                },
                lock: None,
                template: false,
                spec: Ok(ActualSpec {
                    cores: Some(1 + i % 3),
                    memory: Some(512 + u64::from(i % 2) * 512),
                    tags: Some("prod;web".into()),
                    description: Some("bench guest\n".into()),
                    digest: "0123456789abcdef0123456789abcdef01234567".into(),
                    ..ActualSpec::empty(GuestKind::Lxc)
                }),
            },
        );
    }
    let holds = BTreeMap::new();
    let settings = PlanSettings::default();
    let mut times = Vec::new();
    let mut actions = 0;
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let p = plan::plan(&desired, &observed, &holds, &settings);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        actions = p.actions.len();
    }
    times.sort_by(f64::total_cmp);
    Row::new(
        "-",
        format!("planner alone: {n} guests, {actions} actions"),
        Unit::Millis,
        times[times.len() / 2],
    )
    .detail(format!(
        "plan::plan over a drifted fleet, no I/O; median of {runs}"
    ))
}
