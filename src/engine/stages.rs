//! The order in which a pass dispatches its guests' jobs, following PVE's own start-all
//! and stop-all (docs/proxmox-api.md §5.6): guests to start go by ascending `startup`
//! order, those without one last; the next order begins only once every job of the one
//! before has ended, and then only after the largest `up` delay among them. Guests to
//! stop go the other way: without an order first, then by descending order, with no
//! delays. Within one order, jobs run in parallel under the global cap, starts by vmid
//! ascending and stops descending. Jobs that neither start nor stop run at once.
//!
//! Where this departs from PVE: since pve-manager 9.1.2, start-all sleeps a guest's `up`
//! right after issuing its start, within an order too; here the guests of one order start
//! together and the largest `up` is waited once, after all of them ended (the wait for
//! the tasks to end is PVE's behaviour before 9.1.2). Pure: time is passed in.

use crate::action::ActionKind;
use crate::lanes::Job;
use crate::plan::Startup;
use crate::pve::Vmid;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// One order level: its jobs, and the wait after they all ended.
#[derive(Debug)]
struct Stage {
    jobs: Vec<Job>,
    up: Duration,
}

/// A sequence of stages, one after the other.
#[derive(Debug, Default)]
struct Sequence {
    waiting: VecDeque<Stage>,
    /// Guests of the stage now running, not yet ended.
    running: BTreeSet<Vmid>,
    /// The wait after the stage that just ended.
    up: Duration,
    /// When the next stage may go: `None` while one runs.
    next_at: Option<Instant>,
}

/// The jobs of one pass, staged.
#[derive(Debug, Default)]
pub(super) struct Stages {
    sequences: Vec<Sequence>,
}

/// Which way a job moves its guest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    Neither,
    Stop,
    Start,
}

fn way(job: &Job) -> Way {
    if job.actions.iter().any(|a| a.kind == ActionKind::Start) {
        Way::Start
    } else if job
        .actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Shutdown | ActionKind::Stop))
    {
        Way::Stop
    } else {
        Way::Neither
    }
}

impl Stages {
    /// Stages `jobs`, each with its guest's `startup` property (if known) and the `up`
    /// delay its kind of guest has when none is set. Nothing is due until
    /// [`Stages::due`] is asked.
    pub(super) fn new(jobs: Vec<(Job, Option<Startup>, Duration)>, now: Instant) -> Stages {
        // Key: for starts the order (absent last); for stops the reverse (absent first).
        let mut by: BTreeMap<(Way, u64), Vec<(Job, Duration)>> = BTreeMap::new();
        for (job, startup, default_up) in jobs {
            let order = startup.and_then(|s| s.order);
            let up = startup
                .and_then(|s| s.up)
                .map_or(default_up, Duration::from_secs);
            let w = way(&job);
            let key = match w {
                Way::Neither => 0,
                Way::Start => order.unwrap_or(u64::MAX),
                Way::Stop => u64::MAX - order.map_or(u64::MAX, |o| o),
            };
            by.entry((w, key)).or_default().push((job, up));
        }
        let mut sequences: BTreeMap<Way, Sequence> = BTreeMap::new();
        for ((w, _), mut jobs) in by {
            match w {
                Way::Stop => jobs.sort_by_key(|(j, _)| std::cmp::Reverse(j.vmid)),
                _ => jobs.sort_by_key(|(j, _)| j.vmid),
            }
            let up = match w {
                Way::Start => jobs.iter().map(|(_, up)| *up).max().unwrap_or_default(),
                _ => Duration::ZERO,
            };
            let seq = sequences.entry(w).or_insert_with(|| Sequence {
                next_at: Some(now),
                ..Sequence::default()
            });
            seq.waiting.push_back(Stage {
                jobs: jobs.into_iter().map(|(j, _)| j).collect(),
                up,
            });
        }
        Stages {
            sequences: sequences.into_values().collect(),
        }
    }

    /// The jobs that may be dispatched at `now`: the next stage of every sequence whose
    /// previous stage has ended and whose wait has passed.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Job> {
        let mut out = Vec::new();
        for seq in &mut self.sequences {
            if seq.next_at.is_none_or(|t| t > now) {
                continue;
            }
            let Some(stage) = seq.waiting.pop_front() else {
                seq.next_at = None;
                continue;
            };
            seq.running = stage.jobs.iter().map(|j| j.vmid).collect();
            seq.up = stage.up;
            seq.next_at = None;
            out.extend(stage.jobs);
        }
        out
    }

    /// A guest's job ended at `now`; when it was the last of its stage, the next stage is
    /// due after that stage's wait.
    pub(super) fn ended(&mut self, vmid: Vmid, now: Instant) {
        for seq in &mut self.sequences {
            if seq.running.remove(&vmid) && seq.running.is_empty() && !seq.waiting.is_empty() {
                seq.next_at = Some(now + seq.up);
            }
        }
    }

    /// When a stage next falls due, if one waits for time.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.sequences
            .iter()
            .filter(|s| !s.waiting.is_empty())
            .filter_map(|s| s.next_at)
            .min()
    }

    /// Takes every job not yet dispatched (shutdown: they end unrun).
    pub(super) fn take_waiting(&mut self) -> Vec<Job> {
        self.sequences
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.waiting))
            .flat_map(|stage| stage.jobs)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, Params};

    fn job(vmid: u32, kind: ActionKind) -> Job {
        let vmid = Vmid::new(vmid.into()).unwrap();
        Job {
            vmid,
            actions: vec![Action {
                vmid,
                kind,
                guest: crate::pve::GuestKind::Lxc,
                via_task: false,
                key: None,
                guard: None,
                params: Params::new(),
                reason: String::new(),
            }],
            fingerprint: 0,
            settings: 0,
        }
    }

    fn order(o: Option<u64>, up: Option<u64>) -> Option<Startup> {
        Some(Startup {
            order: o,
            up,
            down: None,
        })
    }

    fn v(n: u32) -> Vmid {
        Vmid::new(n.into()).unwrap()
    }

    fn vmids(jobs: &[Job]) -> Vec<u32> {
        jobs.iter().map(|j| j.vmid.get()).collect()
    }

    #[test]
    fn starts_go_by_ascending_order_with_up_delays_and_stops_the_other_way() {
        let t0 = Instant::now();
        let zero = Duration::ZERO;
        let mut s = Stages::new(
            vec![
                (job(105, ActionKind::Start), None, zero),
                (job(103, ActionKind::Start), order(Some(2), None), zero),
                (job(101, ActionKind::Start), order(Some(1), Some(30)), zero),
                (job(102, ActionKind::Start), order(Some(1), Some(5)), zero),
                (job(201, ActionKind::Shutdown), order(Some(1), None), zero),
                (job(202, ActionKind::Shutdown), None, zero),
                (job(203, ActionKind::Stop), order(Some(2), None), zero),
                (job(301, ActionKind::SetConfig), None, zero),
            ],
            t0,
        );
        // At once: the config-only job, the first start order, the unordered stop.
        assert_eq!(vmids(&s.due(t0)), [301, 202, 101, 102]);
        assert!(s.due(t0).is_empty());
        s.ended(v(202), t0);
        assert_eq!(vmids(&s.due(t0)), [203], "stops: then order 2, no delay");
        s.ended(v(101), t0);
        assert!(s.due(t0).is_empty(), "order 1 has not ended");
        s.ended(v(102), t0);
        assert_eq!(s.next_wake(), Some(t0 + Duration::from_secs(30)));
        assert!(s.due(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(vmids(&s.due(t0 + Duration::from_secs(30))), [103]);
        s.ended(v(203), t0);
        assert_eq!(vmids(&s.due(t0)), [201]);
        s.ended(v(103), t0 + Duration::from_secs(31));
        assert_eq!(vmids(&s.due(t0 + Duration::from_secs(31))), [105]);
        assert_eq!(s.next_wake(), None);
    }

    #[test]
    fn without_orders_everything_is_due_at_once_and_waiting_jobs_can_be_taken() {
        let t0 = Instant::now();
        let zero = Duration::ZERO;
        let mut s = Stages::new(
            (101..=104)
                .map(|v| (job(v, ActionKind::Start), None, zero))
                .collect(),
            t0,
        );
        assert_eq!(vmids(&s.due(t0)), [101, 102, 103, 104]);
        let mut s = Stages::new(
            vec![
                (job(101, ActionKind::Start), order(Some(1), None), zero),
                (job(102, ActionKind::Start), order(Some(2), None), zero),
            ],
            t0,
        );
        assert_eq!(vmids(&s.due(t0)), [101]);
        assert_eq!(vmids(&s.take_waiting()), [102]);
    }
}
