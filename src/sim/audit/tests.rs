//! The audit on hand-built timelines: overlaps, touching spans, delayed executions,
//! redundant starts and config updates, and a start after a hand stop.

use super::*;

/// A hand-built timeline: requests with times in ms from the node's start.
struct Timeline {
    origin: Instant,
    requests: Vec<RequestRecord>,
    task_ends: BTreeMap<String, Option<Instant>>,
}

fn guest(status: PowerState) -> SimGuest {
    let mut g = SimGuest::new(101, "pve1");
    g.status = status;
    g.cores = Some(2);
    g.tags = Some("a;b".into());
    g
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            origin: Instant::now(),
            requests: Vec::new(),
            task_ends: BTreeMap::new(),
        }
    }

    fn t(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    /// A mutating request on guest `vmid` arriving at `at`, done at `done` (`None`:
    /// still being processed) with the guest as `g` at arrival.
    fn req(&mut self, method: &str, path: &str, at: u64, done: Option<u64>, g: SimGuest) {
        let seq = self.requests.len() as u64;
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let params = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.requests.push(RequestRecord {
            seq,
            method: method.into(),
            path: path.into(),
            params,
            status: 200,
            vmid: path.split('/').nth(4).and_then(|v| v.parse().ok()),
            node: Some("pve1".into()),
            mutating: method != "GET",
            at: self.t(at),
            done: done.map(|d| self.t(d)),
            executed: true,
            task: None,
            guest: Some(g),
            guest_tasks: Vec::new(),
        });
    }

    /// The last request started a task that ended at `end` (`None`: still runs).
    fn task(&mut self, end: Option<u64>) {
        let r = self.requests.last_mut().unwrap();
        let upid = format!(
            "UPID:pve1:{:08X}:00000001:00000002:vzstart:101:a@pve!t:",
            r.seq
        );
        r.task = Some(upid.clone());
        self.task_ends
            .insert(upid, end.map(|e| self.origin + Duration::from_millis(e)));
    }

    /// The last request arrived while these task types of its guest ran.
    fn while_running(&mut self, kinds: &[&str]) {
        let r = self.requests.last_mut().unwrap();
        r.guest_tasks = kinds.iter().map(|k| k.to_string()).collect();
    }

    fn audit(&self) -> Audit {
        check(&self.requests, &self.task_ends, self.origin)
    }
}

const START: &str = "/nodes/pve1/lxc/101/status/start";
const STOP: &str = "/nodes/pve1/lxc/101/status/stop";
const CONFIG: &str = "/nodes/pve1/lxc/101/config";

#[test]
fn overlapping_actions_of_one_guest_are_named() {
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Stopped));
    tl.task(Some(200));
    tl.req(
        "PUT",
        &format!("{CONFIG}?cores=4"),
        100,
        Some(110),
        guest(PowerState::Stopped),
    );
    let a = tl.audit();
    assert_eq!((a.violations.len(), a.checked), (1, 2), "{a}");
    let Violation::Overlap {
        vmid,
        first,
        second,
    } = &a.violations[0]
    else {
        panic!("{a}");
    };
    assert_eq!((*vmid, first.seq, second.seq), (101, 0, 1));
    assert_eq!(first.until, Some(Duration::from_millis(200)));
    let text = a.to_string();
    for part in [
        "guest 101: two actions in flight at once",
        "#0 POST /nodes/pve1/lxc/101/status/start (arrived +0.000s, in flight until +0.200s, task UPID:pve1:",
        "#1 PUT /nodes/pve1/lxc/101/config (arrived +0.100s, in flight until +0.110s)",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[test]
fn touching_spans_and_other_guests_do_not_overlap() {
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Stopped));
    tl.task(Some(200));
    tl.req(
        "POST",
        "/nodes/pve1/lxc/102/status/start",
        50,
        Some(60),
        guest(PowerState::Stopped),
    );
    tl.task(None);
    tl.req(
        "PUT",
        &format!("{CONFIG}?cores=4"),
        200,
        Some(210),
        guest(PowerState::Running),
    );
    tl.req("POST", STOP, 210, Some(215), guest(PowerState::Running));
    tl.task(Some(400));
    let a = tl.audit();
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.checked, 4);
    assert_eq!(
        a.to_string(),
        "the node's audit: no violations (4 mutating requests checked)"
    );
}

#[test]
fn a_delayed_execution_after_the_client_left_is_in_flight_until_its_task_ends() {
    // The first start waited 3 s at the node before it ran; the client gave up after
    // 1 s and sent it again.
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(3000), guest(PowerState::Stopped));
    tl.task(Some(3200));
    tl.req("POST", START, 1000, Some(1005), guest(PowerState::Stopped));
    let a = tl.audit();
    assert_eq!(a.violations.len(), 1, "{a}");
    assert!(matches!(&a.violations[0], Violation::Overlap { first, .. } if first.seq == 0));
    // Still waiting at the node when audited: in flight until the audit.
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, None, guest(PowerState::Stopped));
    tl.req("POST", START, 1000, Some(1005), guest(PowerState::Stopped));
    let a = tl.audit();
    assert_eq!(a.violations.len(), 1, "{a}");
    assert!(a.to_string().contains("in flight until the audit"), "{a}");
    // And a task still running holds its guest as long.
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Stopped));
    tl.task(None);
    tl.req("POST", STOP, 5000, Some(5005), guest(PowerState::Running));
    assert_eq!(tl.audit().violations.len(), 1);
}

#[test]
fn redundant_power_requests() {
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Running));
    tl.req("POST", START, 10, Some(15), guest(PowerState::Stopped));
    tl.while_running(&["vzstart"]);
    tl.req("POST", STOP, 20, Some(25), guest(PowerState::Stopped));
    tl.req(
        "POST",
        "/nodes/pve1/lxc/101/status/shutdown",
        30,
        Some(35),
        guest(PowerState::Stopped),
    );
    let a = tl.audit();
    let whys: Vec<String> = a
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Redundant { why, request, .. } => Some(format!("{} {why}", request.seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        whys,
        [
            "0 the guest was running",
            "1 a start task of the guest was running",
            "2 the guest was stopped and no task of it was running",
            "3 the guest was stopped and no task of it was running",
        ]
    );
    assert!(
        a.to_string()
            .contains("guest 101: intent sent twice: #0 POST"),
        "{a}"
    );
    // A stop while a start task runs is not redundant: the start may still fail.
    let mut tl = Timeline::new();
    tl.req("POST", STOP, 0, Some(5), guest(PowerState::Stopped));
    tl.while_running(&["vzstart"]);
    assert!(tl.audit().is_clean());
}

#[test]
fn redundant_config_updates() {
    let noop = |query: &str| {
        let mut tl = Timeline::new();
        tl.req(
            "PUT",
            &format!("{CONFIG}?{query}"),
            0,
            Some(5),
            guest(PowerState::Running),
        );
        !tl.audit().is_clean()
    };
    assert!(noop("cores=2&digest=abc"));
    assert!(noop("tags=b,a"), "tags compare as stored");
    assert!(noop("delete=onboot"), "onboot is not set");
    assert!(
        !noop("delete=nope"),
        "not a config key: invalid, not redundant"
    );
    assert!(!noop("memory=512&delete=cores"));
    assert!(!noop("cores=3&digest=abc"));
    assert!(!noop("delete=swap"));
    assert!(!noop("digest=abc"), "no parameters at all is not an intent");
    let mut tl = Timeline::new();
    tl.req(
        "PUT",
        &format!("{CONFIG}?cores=2"),
        0,
        Some(5),
        guest(PowerState::Running),
    );
    assert!(tl
        .audit()
        .to_string()
        .contains("every parameter already held (cores=\"2\")"));
}

#[test]
fn a_start_after_a_hand_stop_is_legitimate() {
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Stopped));
    tl.task(Some(200));
    // Someone stops the guest by hand at 300 ms: not a request. The agent starts it
    // again; the node noted the guest stopped at arrival.
    tl.req("POST", START, 500, Some(505), guest(PowerState::Stopped));
    tl.task(Some(700));
    assert!(tl.audit().is_clean(), "{}", tl.audit());
    // Without the hand stop the second start would be sent twice.
    let mut tl = Timeline::new();
    tl.req("POST", START, 0, Some(5), guest(PowerState::Stopped));
    tl.task(Some(200));
    tl.req("POST", START, 500, Some(505), guest(PowerState::Running));
    assert_eq!(tl.audit().violations.len(), 1);
}
