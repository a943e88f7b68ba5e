//! Fault injection: which requests a fault hits ([`Match`], [`FaultRule`]) and what it
//! does to them ([`Effect`]), decided once per request at its arrival.
//!
//! Reproducible: the rules are checked in the order requests arrive (the node numbers
//! them under its lock), and rates draw from the node's generator seeded from
//! `SimOptions::seed`. The same seed, rules and request order give the same faults.
//!
//! Every effect says whether the request was executed: a client must treat "never
//! carried out" (a reset, a status before execution) apart from "carried out, answer
//! lost or garbled" (a status after execution, a truncated, garbled or huge body).
//!
//! Imports nothing else of the simulator.

use crate::rng::XorShift;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Faults to inject; set (and replaced whole) through `Sim::set_faults`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Checked in order for every request; see [`FaultRule`] for how they combine.
    pub rules: Vec<FaultRule>,
    /// Tasks for these guests end with this error text.
    pub fail_tasks: BTreeMap<u32, String>,
    /// Tasks for these guests never finish while listed here.
    pub hang_tasks: BTreeSet<u32>,
}

impl Faults {
    /// Just this rule.
    pub fn rule(rule: FaultRule) -> Faults {
        Faults::default().with(rule)
    }

    /// These faults and one more rule, checked after the others.
    pub fn with(mut self, rule: FaultRule) -> Faults {
        self.rules.push(rule);
        self
    }
}

/// Which requests a rule applies to: every condition that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// The method, compared without regard to case.
    pub method: Option<String>,
    /// A substring of the path: percent-decoded, without `/api2/json` and the query.
    pub path: Option<String>,
    /// The guest in the path (`/nodes/{node}/lxc/{vmid}/...`, `/nodes/{node}/qemu/{vmid}/...`).
    pub vmid: Option<u32>,
}

impl Match {
    /// Every request.
    pub fn any() -> Match {
        Match::default()
    }

    /// Requests with this method.
    pub fn method(method: &str) -> Match {
        Match {
            method: Some(method.to_string()),
            ..Match::default()
        }
    }

    /// GETs whose path contains `path`.
    pub fn get(path: &str) -> Match {
        Match::method("GET").path(path)
    }

    /// POSTs whose path contains `path`.
    pub fn post(path: &str) -> Match {
        Match::method("POST").path(path)
    }

    /// PUTs whose path contains `path`.
    pub fn put(path: &str) -> Match {
        Match::method("PUT").path(path)
    }

    /// Also: the path contains `path`.
    pub fn path(mut self, path: &str) -> Match {
        self.path = Some(path.to_string());
        self
    }

    /// Also: the request is about guest `vmid`.
    pub fn vmid(mut self, vmid: u32) -> Match {
        self.vmid = Some(vmid);
        self
    }

    /// Whether a request matches.
    pub fn matches(&self, method: &str, path: &str, vmid: Option<u32>) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_ref().is_none_or(|p| path.contains(p.as_str()))
            && self.vmid.is_none_or(|v| vmid == Some(v))
    }
}

/// What a fault does to a request. Each variant says whether the request is executed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Executed, late: the node has read the request, waits this long, then executes it
    /// (a mutation creates its task) even if the client has gone away meanwhile, then
    /// answers (to a closed socket, if so). Models pvedaemon forking the worker late
    /// (busy workers, a guest's config lock), and answers slower than a client's timeout.
    /// If the simulated node shuts down during the wait, the request is not executed.
    Delay(Duration),
    /// Not executed: the socket is closed right after the request was read, unanswered.
    Reset,
    /// Not executed: answered with this status at once. 500 comes in PVE's envelope
    /// (`simulated internal server error`); 596 bare, as pveproxy passes on
    /// AnyEvent::HTTP's `Connection timed out`; any other status (502, 503, 504) as an
    /// HTML page from a reverse proxy in front of the API.
    StatusBefore(u16),
    /// Executed: the node carries the request out, then this status goes out instead of
    /// its answer, in the same forms as [`Effect::StatusBefore`]: a proxy gave up (502,
    /// 503, 504), or pveproxy stopped waiting for pvedaemon (596), while the call went
    /// ahead.
    StatusAfter(u16),
    /// Executed: the node's answer goes out with a `Content-Length` of its full body, and
    /// the connection is closed after this many bytes of body (all of it, if shorter).
    Truncate(u64),
    /// Executed: whatever the node answered, a 200 `text/html` login page goes out.
    Html,
    /// Executed: a 200 answer's JSON is garbled as said; any other answer goes out as the
    /// node made it.
    Garble(Garble),
    /// Executed: the node's answer, status kept, its JSON body padded with a `"pad"`
    /// string member to this many bytes. Still valid JSON; streamed, never held in memory.
    Huge(u64),
}

impl Effect {
    /// Whether the request is carried out (a delayed one, unless the node shuts down).
    pub fn executes(&self) -> bool {
        !matches!(self, Effect::Reset | Effect::StatusBefore(_))
    }
}

/// How [`Effect::Garble`] spoils a 200 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Garble {
    /// `data` has the wrong JSON type: a list becomes a string, an object a list, a
    /// string a number, anything else an object.
    WrongType,
    /// This member is missing from `data` (from each entry, when `data` is a list).
    Missing(String),
    /// This member of `data` (of each entry, when `data` is a list) has the other type:
    /// a number becomes its text (a vmid as `"101"`), a string becomes a number (its
    /// value if it has one, else 0), anything else a string.
    SwapType(String),
    /// `data` is a string that is not a valid UPID (it looks like one, with a bad pid);
    /// meant for a mutation that answers with its task's UPID.
    BadUpid,
}

/// One fault: a [`Match`], an [`Effect`], and which of the matching requests it hits.
///
/// A rule counts the requests it matches. It hits the `nth` one only (when set), each
/// with probability `rate` (drawn from the seeded generator once per matching request
/// whenever `rate` is below 1, whether or not it then hits), and at most `times` times
/// (when set). When several rules hit one request, their delays add up, and of the other
/// effects the first hitting rule's wins; a rule whose effect is overruled that way does
/// not count it against `times`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub when: Match,
    pub effect: Effect,
    /// Only the n-th matching request, counting from 1.
    pub nth: Option<u64>,
    /// At most this many hits.
    pub times: Option<u64>,
    /// The probability of a hit, in 0..=1.
    pub rate: f64,
}

impl FaultRule {
    /// A rule that hits every matching request.
    pub fn new(when: Match, effect: Effect) -> FaultRule {
        FaultRule {
            when,
            effect,
            nth: None,
            times: None,
            rate: 1.0,
        }
    }

    /// Only the n-th matching request (from 1).
    pub fn nth(mut self, n: u64) -> FaultRule {
        self.nth = Some(n);
        self
    }

    /// At most `n` hits.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Each matching request with probability `p`.
    pub fn rate(mut self, p: f64) -> FaultRule {
        self.rate = p;
        self
    }
}

/// A rule's counters, kept by the node next to the rules and reset with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleCount {
    pub seen: u64,
    pub hits: u64,
}

/// What the rules decided for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// The sum of the delays of the hitting rules.
    pub delay: Duration,
    /// The first hitting rule's other effect.
    pub effect: Option<Effect>,
}

/// Decides the faults of one request and advances the counters and the generator.
pub(crate) fn decide(
    rules: &[FaultRule],
    counts: &mut Vec<RuleCount>,
    rng: &mut XorShift,
    method: &str,
    path: &str,
    vmid: Option<u32>,
) -> Verdict {
    counts.resize(rules.len(), RuleCount::default());
    let mut v = Verdict::default();
    for (rule, count) in rules.iter().zip(counts.iter_mut()) {
        if !rule.when.matches(method, path, vmid) {
            continue;
        }
        count.seen += 1;
        let drawn = rule.rate >= 1.0 || rng.chance(rule.rate);
        let hit = drawn
            && rule.nth.is_none_or(|n| n == count.seen)
            && rule.times.is_none_or(|t| count.hits < t);
        if !hit {
            continue;
        }
        match &rule.effect {
            Effect::Delay(d) => v.delay += *d,
            _ if v.effect.is_some() => continue,
            e => v.effect = Some(e.clone()),
        }
        count.hits += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rules: &[FaultRule], seed: u64, reqs: &[(&str, &str, Option<u32>)]) -> Vec<Verdict> {
        let mut counts = Vec::new();
        let mut rng = XorShift::new(seed);
        reqs.iter()
            .map(|(m, p, v)| decide(rules, &mut counts, &mut rng, m, p, *v))
            .collect()
    }

    const START: (&str, &str, Option<u32>) =
        ("POST", "/nodes/pve1/lxc/101/status/start", Some(101));
    const LIST: (&str, &str, Option<u32>) = ("GET", "/nodes/pve1/lxc", None);
    const STATUS: (&str, &str, Option<u32>) =
        ("GET", "/nodes/pve1/lxc/102/status/current", Some(102));

    #[test]
    fn matches_on_method_path_and_vmid() {
        let m = Match::get("/status/").vmid(102);
        assert!(m.matches("get", STATUS.1, STATUS.2));
        assert!(!m.matches("POST", STATUS.1, STATUS.2));
        assert!(!m.matches("GET", "/nodes/pve1/lxc/101/status/current", Some(101)));
        assert!(!m.matches("GET", LIST.1, None));
        assert!(Match::any().matches("DELETE", "/x", None));
        assert!(Match::method("GET")
            .vmid(102)
            .matches("GET", STATUS.1, STATUS.2));
    }

    #[test]
    fn nth_and_times_pick_requests_by_count() {
        let second = [FaultRule::new(Match::method("GET"), Effect::Reset).nth(2)];
        let v = run(&second, 1, &[LIST, START, LIST, LIST]);
        let effects: Vec<_> = v.iter().map(|v| v.effect.clone()).collect();
        assert_eq!(effects, [None, None, Some(Effect::Reset), None]);
        let twice = [FaultRule::new(Match::any(), Effect::StatusBefore(503)).times(2)];
        let v = run(&twice, 1, &[LIST, START, LIST, START]);
        let hits = v.iter().filter(|v| v.effect.is_some()).count();
        assert_eq!(hits, 2);
        assert!(v[0].effect.is_some() && v[1].effect.is_some());
    }

    #[test]
    fn delays_add_up_and_the_first_other_effect_wins() {
        let rules = [
            FaultRule::new(Match::any(), Effect::Delay(Duration::from_millis(10))),
            FaultRule::new(Match::post(""), Effect::StatusAfter(596)).times(1),
            FaultRule::new(Match::any(), Effect::Delay(Duration::from_millis(5))),
            FaultRule::new(Match::any(), Effect::Reset).times(1),
        ];
        let v = run(&rules, 1, &[START, START]);
        assert_eq!(v[0].delay, Duration::from_millis(15));
        assert_eq!(v[0].effect, Some(Effect::StatusAfter(596)));
        // The reset was overruled the first time, so it still has its one hit.
        assert_eq!(v[1].effect, Some(Effect::Reset));
    }

    #[test]
    fn rates_are_reproducible_from_the_seed() {
        let rules = [
            FaultRule::new(Match::any(), Effect::StatusBefore(500)).rate(0.5),
            FaultRule::new(Match::get(""), Effect::Delay(Duration::from_millis(1))).rate(0.3),
        ];
        let reqs: Vec<_> = (0..64)
            .map(|i| if i % 3 == 0 { START } else { LIST })
            .collect();
        let a = run(&rules, 7, &reqs);
        assert_eq!(a, run(&rules, 7, &reqs));
        assert_ne!(a, run(&rules, 8, &reqs));
        let hits = a.iter().filter(|v| v.effect.is_some()).count();
        assert!((16..48).contains(&hits), "{hits}");
        assert!(a.iter().any(|v| !v.delay.is_zero()));
        // A rate of 1 draws nothing: adding such a rule leaves the others' draws alone.
        let mut more = rules.to_vec();
        more.insert(0, FaultRule::new(Match::put("/never"), Effect::Html));
        more.push(FaultRule::new(Match::any(), Effect::Delay(Duration::ZERO)));
        assert_eq!(run(&more, 7, &reqs), a);
    }

    #[test]
    fn which_effects_execute() {
        assert!(!Effect::Reset.executes());
        assert!(!Effect::StatusBefore(502).executes());
        for e in [
            Effect::Delay(Duration::from_secs(1)),
            Effect::StatusAfter(504),
            Effect::Truncate(3),
            Effect::Html,
            Effect::Garble(Garble::BadUpid),
            Effect::Huge(1 << 20),
        ] {
            assert!(e.executes(), "{e:?}");
        }
    }
}
