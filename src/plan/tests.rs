//! Table-driven planner tests: each case renders its plan as text and compares it.

use super::*;
use crate::desired::{OneShotAction, RunState};
use crate::pve::GuestKind;

fn vmid(n: u32) -> Vmid {
    Vmid::new(n.into()).unwrap()
}

fn spec(n: u32) -> GuestSpec {
    GuestSpec::new(vmid(n))
}

fn guest(n: u32, running: bool) -> ActualGuest {
    ActualGuest {
        vmid: vmid(n),
        kind: GuestKind::Lxc,
        vm_power: None,
        name: Some(format!("ct{n}")),
        tags: None,
        status: if running {
            PowerState::Running
        } else {
            PowerState::Stopped
        },
        lock: None,
        template: false,
        spec: Ok(ActualSpec {
            cores: Some(1),
            memory: Some(512),
            swap: Some(512),
            digest: "d1".into(),
            ..ActualSpec::empty(GuestKind::Lxc)
        }),
    }
}

/// Renders every detail of a plan: each action with its params, then pending, skips and
/// in-sync guests.
fn show(plan: &Plan) -> String {
    let mut out = String::new();
    for a in &plan.actions {
        let params: Vec<String> = a.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out += &format!(
            "{} {} [{}] {}\n",
            a.vmid,
            a.kind,
            params.join(" "),
            a.reason
        );
    }
    for (v, f) in &plan.pending {
        out += &format!("{v} pending {f:?}\n");
    }
    for s in &plan.skipped {
        out += &format!("{} skip {}\n", s.vmid, s.reason);
    }
    for v in &plan.in_sync {
        out += &format!("{v} in sync\n");
    }
    for (v, o) in &plan.waiting {
        out += &format!("{v} once {:?} waits for {:?}\n", o.key, o.node);
    }
    out
}

fn check(
    specs: Vec<GuestSpec>,
    observed: Actual,
    holds: &[(u32, Hold)],
    settings: PlanSettings,
    expected: &str,
) {
    let desired = DesiredState {
        guests: specs.into_iter().map(|s| (s.vmid, s)).collect(),
    };
    let holds = holds.iter().map(|(v, h)| (vmid(*v), h.clone())).collect();
    let got = show(&plan(&desired, &observed, &holds, &settings));
    assert_eq!(
        got, expected,
        "\n--- got ---\n{got}--- expected ---\n{expected}"
    );
}

/// `guests` on pve1, a node alone (not in a cluster).
fn local(guests: Vec<ActualGuest>) -> Actual {
    Actual {
        local: guests.into_iter().map(|g| (g.vmid, g)).collect(),
        node: "pve1".into(),
        cluster_nodes: Some(1),
        ..Actual::default()
    }
}

fn with_spec(mut g: ActualGuest, f: impl FnOnce(&mut ActualSpec)) -> ActualGuest {
    f(g.spec.as_mut().unwrap());
    g
}

#[test]
fn nothing_named_nothing_planned() {
    check(
        vec![],
        local(vec![guest(101, true)]),
        &[],
        PlanSettings::default(),
        "",
    );
}

#[test]
fn start_and_config_in_order() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.memory = Some(1024);
    check(
        vec![s],
        local(vec![guest(101, false)]),
        &[],
        PlanSettings::default(),
        "101 set_config [digest=d1 memory=1024] memory 512 -> 1024\n\
         101 start [] state stopped -> running\n",
    );
}

#[test]
fn shutdown_then_config_when_stopping() {
    let mut s = spec(101);
    s.state = Some(RunState::Stopped);
    s.cores = Some(4);
    check(
        vec![s.clone()],
        local(vec![guest(101, true)]),
        &[],
        PlanSettings::default(),
        "101 shutdown [forceStop=1 timeout=60] state running -> stopped\n\
         101 set_config [cores=4 digest=d1] cores 1 -> 4\n",
    );
    check(
        vec![s],
        local(vec![guest(101, true)]),
        &[],
        PlanSettings {
            hard_stop: true,
            shutdown_timeout_secs: 5,
            ..PlanSettings::default()
        },
        "101 stop [] state running -> stopped\n\
         101 set_config [cores=4 digest=d1] cores 1 -> 4\n",
    );
}

#[test]
fn in_sync_guests_plan_nothing() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.cores = Some(1);
    s.memory = Some(512);
    s.swap = Some(512);
    check(
        vec![s],
        local(vec![guest(101, true)]),
        &[],
        PlanSettings::default(),
        "101 in sync\n",
    );
}

#[test]
fn normalizers_absent_values_mean_pve_defaults() {
    // Absent swap is 0, absent onboot is off, absent memory is 512, absent cores is
    // unlimited: so swap 0 / onboot false / memory 512 are in sync, cores 2 is not.
    let mut s = spec(101);
    s.swap = Some(0);
    s.onboot = Some(false);
    s.memory = Some(512);
    s.cores = Some(2);
    let g = with_spec(guest(101, true), |o| {
        o.swap = None;
        o.onboot = None;
        o.memory = None;
        o.cores = None;
    });
    check(
        vec![s],
        local(vec![g]),
        &[],
        PlanSettings::default(),
        "101 set_config [cores=2 digest=d1] cores unlimited -> 2\n",
    );
}

#[test]
fn normalizers_description_and_tags() {
    /// Desired description, observed description, desired tags, observed tags, expected.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
        Option<&'a str>,
        &'a str,
    );
    let cases: &[Case] = &[
        ("hello", Some("hello\n"), &["web", "prod"], Some("prod;web"), "101 in sync\n"),
        ("a\n\nb\n\n", Some("a\n\nb\n"), &["Web", "web", "PROD"], Some("prod;web"), "101 in sync\n"),
        ("", None, &[], None, "101 in sync\n"),
        (
            "new",
            Some("old\n"),
            &["a"],
            Some("a"),
            "101 set_config [description=new digest=d1] description \"old\" -> \"new\"\n",
        ),
        (
            "",
            Some("old\n"),
            &[],
            Some("x;y"),
            "101 set_config [delete=description,tags digest=d1] description \"old\" -> \"\", tags x;y -> (none)\n",
        ),
        (
            "x",
            Some("x\n"),
            &["b", "a"],
            Some("a,c"),
            "101 set_config [digest=d1 tags=a;b] tags a;c -> a;b\n",
        ),
    ];
    for (want_desc, have_desc, want_tags, have_tags, expected) in cases {
        let mut s = spec(101);
        s.description = Some(want_desc.to_string());
        s.tags = Some(want_tags.iter().map(|t| t.to_string()).collect());
        let g = with_spec(guest(101, true), |o| {
            o.description = have_desc.map(str::to_string);
            o.tags = have_tags.map(str::to_string);
        });
        check(
            vec![s],
            local(vec![g]),
            &[],
            PlanSettings::default(),
            expected,
        );
    }
}

#[test]
fn onboot_and_swap_wire_values() {
    let mut s = spec(101);
    s.onboot = Some(true);
    s.swap = Some(256);
    check(
        vec![s],
        local(vec![guest(101, false)]),
        &[],
        PlanSettings::default(),
        "101 set_config [digest=d1 onboot=1 swap=256] swap 512 -> 256, onboot 0 -> 1\n",
    );
}

#[test]
fn pending_drift_is_reported_not_resent() {
    let mut s = spec(101);
    s.memory = Some(2048);
    s.cores = Some(2);
    let g = with_spec(guest(101, true), |o| o.pending = vec![Field::Memory]);
    check(
        vec![s],
        local(vec![g]),
        &[],
        PlanSettings::default(),
        "101 set_config [cores=2 digest=d1] cores 1 -> 2\n101 pending [Memory]\n",
    );
}

#[test]
fn every_skip_class() {
    let running = |n| {
        let mut s = spec(n);
        s.state = Some(RunState::Running);
        s.memory = Some(4096);
        s
    };
    let mut locked = guest(102, false);
    locked.lock = Some("backup".into());
    let mut template = guest(103, false);
    template.template = true;
    let ha = guest(104, false);
    let mut unknown = guest(105, false);
    unknown.spec = Err("500 boom".into());
    let held = [guest(106, false), guest(107, false), guest(108, false)];
    let mut observed = local(
        [locked, template, ha, unknown]
            .into_iter()
            .chain(held)
            .collect(),
    );
    observed.ha_managed.insert(vmid(104), "started".into());
    observed.elsewhere.insert(vmid(109), "pve2".into());
    check(
        (102..=110).map(running).collect(),
        observed,
        &[
            (106, Hold::Busy),
            (
                107,
                Hold::Backoff {
                    until: "2026-11-29T20:15:03Z".into(),
                    error: "http 500: boom".into(),
                },
            ),
            (
                108,
                Hold::Terminal {
                    error: "400 memory: bad".into(),
                },
            ),
        ],
        PlanSettings::default(),
        "105 start [] state stopped -> running\n\
         102 skip locked (backup)\n\
         103 skip template: a template cannot run\n\
         104 skip ha-managed (ha state started): ha-manager owns it\n\
         105 skip spec unknown (500 boom): config not managed\n\
         106 skip busy: an earlier action is running\n\
         107 skip in backoff until 2026-11-29T20:15:03Z: http 500: boom\n\
         108 skip failed permanently (400 memory: bad): change its desired state to retry\n\
         109 skip elsewhere: pve2\n\
         110 skip missing: on no node of the cluster\n",
    );
}

#[test]
fn stopped_template_may_be_configured() {
    let mut s = spec(101);
    s.state = Some(RunState::Stopped);
    s.cores = Some(2);
    let mut g = guest(101, false);
    g.template = true;
    check(
        vec![s],
        local(vec![g]),
        &[],
        PlanSettings::default(),
        "101 set_config [cores=2 digest=d1] cores 1 -> 2\n",
    );
}

#[test]
fn unnamed_guests_are_never_touched() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    let observed = local(vec![guest(101, true), guest(102, false), guest(103, true)]);
    let desired = DesiredState {
        guests: [(s.vmid, s)].into(),
    };
    let p = plan(
        &desired,
        &observed,
        &BTreeMap::new(),
        &PlanSettings::default(),
    );
    assert!(p.actions.is_empty());
    assert_eq!(p.in_sync, vec![vmid(101)]);
    assert!(p.skipped.is_empty());
}

#[test]
fn render_for_people() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.memory = Some(1024);
    let desired = DesiredState {
        guests: [(s.vmid, s)].into(),
    };
    let mut observed = local(vec![guest(101, false)]);
    observed.elsewhere.insert(vmid(102), "pve2".into());
    let mut desired2 = desired.clone();
    desired2.guests.insert(vmid(102), spec(102));
    let p = plan(
        &desired2,
        &observed,
        &BTreeMap::new(),
        &PlanSettings::default(),
    );
    let names = [(vmid(101), "web".to_string())].into();
    assert_eq!(
        render(&p, &names),
        "101 web  memory 512 -> 1024, state stopped -> running\n102 -  skipped: elsewhere: pve2\n"
    );
    let empty = plan(
        &DesiredState::default(),
        &observed,
        &BTreeMap::new(),
        &PlanSettings::default(),
    );
    assert_eq!(render(&empty, &names), "nothing to do\n");
}

#[test]
fn the_hold_tag_holds_a_guest_and_is_never_written() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.tags = Some(vec!["prod".into(), "Felhom-Hold".into()]);
    let mut held = guest(101, false);
    held.tags = Some("felhom-hold;prod".into());
    check(
        vec![s.clone()],
        local(vec![held]),
        &[(101, Hold::Busy)],
        PlanSettings::default(),
        "101 skip held by tag \"felhom-hold\": remove the tag to hand it back\n",
    );
    // Once the tag is gone the guest is managed again, and the desired list's hold
    // tag is not added back.
    check(
        vec![s],
        local(vec![guest(101, false)]),
        &[],
        PlanSettings::default(),
        "101 set_config [digest=d1 tags=prod] tags (none) -> prod\n\
         101 start [] state stopped -> running\n",
    );
}

#[test]
fn a_name_that_does_not_match_leaves_the_guest_alone_unless_the_guard_is_off() {
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.name = Some("web1".into());
    let mut scratch = guest(101, false);
    scratch.name = Some("scratch".into());
    check(
        vec![s.clone()],
        local(vec![scratch.clone()]),
        &[],
        PlanSettings::default(),
        "101 skip identity mismatch: desired \"web1\", found \"scratch\"\n",
    );
    check(
        vec![s.clone()],
        local(vec![scratch]),
        &[],
        PlanSettings {
            identity_guard: false,
            ..PlanSettings::default()
        },
        "101 start [] state stopped -> running\n",
    );
    // Names compare as host names do: without regard to case.
    let mut web = guest(101, false);
    web.name = Some("WEB1".into());
    check(
        vec![s],
        local(vec![web]),
        &[],
        PlanSettings::default(),
        "101 start [] state stopped -> running\n",
    );
}

#[test]
fn a_status_the_agent_does_not_know_gets_no_action() {
    // Not taken as stopped (a start) or running (a shutdown): left alone.
    let mut unknown = guest(101, false);
    unknown.status = PowerState::Unknown("unknown".into());
    for state in [RunState::Running, RunState::Stopped] {
        let mut s = spec(101);
        s.state = Some(state);
        s.memory = Some(1024);
        check(
            vec![s],
            local(vec![unknown.clone()]),
            &[],
            PlanSettings::default(),
            "101 skip status unknown: the node lists it as \"unknown\"; left alone until it shows running or stopped\n",
        );
    }
}

#[test]
fn an_ha_guest_already_headed_there_gets_no_second_request() {
    let settings = PlanSettings {
        ha_request: true,
        ..PlanSettings::default()
    };
    let want = |n, state| {
        let mut s = spec(n);
        s.state = Some(state);
        s
    };
    let mut observed = local(vec![
        guest(101, false),
        guest(102, true),
        guest(103, false),
        guest(104, true),
    ]);
    for (n, state) in [
        (101, "request_start"),
        (102, "request_stop"),
        (103, "stopped"),
        (104, "started"),
    ] {
        observed.ha_managed.insert(vmid(n), state.into());
    }
    check(
        vec![
            want(101, RunState::Running),
            want(102, RunState::Stopped),
            want(103, RunState::Running),
            want(104, RunState::Stopped),
        ],
        observed,
        &[],
        settings,
        "103 start [] state stopped -> running\n\
         104 shutdown [forceStop=1 timeout=60] state running -> stopped\n\
         101 skip ha request pending (ha state request_start): HA carries it out; not requested again\n\
         102 skip ha request pending (ha state request_stop): HA carries it out; not requested again\n",
    );
}

fn once(key: &str, action: OneShotAction) -> crate::desired::OneShot {
    crate::desired::OneShot {
        node: None,
        key: key.into(),
        action,
    }
}

#[test]
fn a_one_shot_runs_until_its_key_is_spent_then_the_next_one() {
    // No `state`: power is left alone but for the one-shot actions.
    let mut s = spec(101);
    s.memory = Some(1024);
    s.once = vec![
        once("boot-1", OneShotAction::Start),
        once("maint-1", OneShotAction::Shutdown),
    ];
    let mut observed = local(vec![guest(101, false)]);
    check(
        vec![s.clone()],
        observed.clone(),
        &[],
        PlanSettings::default(),
        "101 set_config [digest=d1 memory=1024] memory 512 -> 1024\n\
         101 start [] once \"boot-1\": start\n",
    );
    // boot-1 spent: the next key, a shutdown, goes before the config update.
    observed
        .spent_keys
        .insert(vmid(101), ["boot-1".to_string()].into());
    observed.local.insert(vmid(101), guest(101, true));
    check(
        vec![s.clone()],
        observed.clone(),
        &[],
        PlanSettings::default(),
        "101 shutdown [forceStop=1 timeout=60] once \"maint-1\": shutdown\n\
         101 set_config [digest=d1 memory=1024] memory 512 -> 1024\n",
    );
    // Both spent: the guest's power is left alone, however it is.
    observed.spent_keys.insert(
        vmid(101),
        ["boot-1".to_string(), "maint-1".to_string()].into(),
    );
    s.memory = None;
    check(
        vec![s],
        observed,
        &[],
        PlanSettings::default(),
        "101 in sync\n",
    );
}

#[test]
fn a_one_shot_that_would_change_nothing_is_recorded_first_and_the_state_still_counts() {
    // Already stopped: the shutdown is only recorded; `state` then starts it as usual.
    let mut s = spec(101);
    s.state = Some(RunState::Running);
    s.once = vec![once("maint-1", OneShotAction::Shutdown)];
    check(
        vec![s.clone()],
        local(vec![guest(101, false)]),
        &[],
        PlanSettings::default(),
        "101 shutdown [forceStop=1 timeout=60] once \"maint-1\": shutdown (already stopped: recorded, nothing sent)\n\
         101 start [] state stopped -> running\n",
    );
    // Due and not already so: it replaces the state's power action for this pass.
    check(
        vec![s],
        local(vec![guest(101, true)]),
        &[],
        PlanSettings::default(),
        "101 shutdown [forceStop=1 timeout=60] once \"maint-1\": shutdown\n",
    );
}

#[test]
fn in_a_cluster_only_the_node_a_key_names_carries_it_out() {
    let pinned = |node: &str| crate::desired::OneShot {
        node: Some(node.into()),
        ..once("boot-1", OneShotAction::Start)
    };
    let mut s = spec(101);
    s.state = Some(RunState::Stopped);
    let mut cluster = local(vec![guest(101, false)]);
    cluster.cluster_nodes = Some(3);
    // Named here: carried out, on a node alone or in a cluster.
    s.once = vec![pinned("pve1")];
    check(
        vec![s.clone()],
        cluster.clone(),
        &[],
        PlanSettings::default(),
        "101 start [] once \"boot-1\": start\n",
    );
    // Named elsewhere: not this agent's; `state` has its say, and so would a key
    // after it only once this one is carried out there.
    s.once = vec![pinned("pve2"), once("boot-2", OneShotAction::Start)];
    check(
        vec![s.clone()],
        cluster.clone(),
        &[],
        PlanSettings::default(),
        "101 in sync\n101 once \"boot-1\" waits for Some(\"pve2\")\n",
    );
    // Named nowhere: carried out on a node alone, refused in a cluster or when the
    // cluster's nodes are unknown.
    s.once = vec![once("boot-1", OneShotAction::Start)];
    check(
        vec![s.clone()],
        cluster.clone(),
        &[],
        PlanSettings::default(),
        "101 skip one-shot \"boot-1\" names no node, and this node is one of 3 in its cluster: add \"node\" to the entry, so that one node's agent carries it out\n",
    );
    cluster.cluster_nodes = None;
    check(
        vec![s],
        cluster,
        &[],
        PlanSettings::default(),
        "101 skip one-shot \"boot-1\" names no node, and the cluster's nodes were not read: add \"node\" to the entry, so that one node's agent carries it out\n",
    );
}

#[test]
fn a_one_shot_waits_like_any_power_action() {
    let mut s = spec(101);
    s.once = vec![once("boot-1", OneShotAction::Start)];
    let mut observed = local(vec![guest(101, false)]);
    observed.bulk_task = Some("startall (UPID:x)".into());
    check(
        vec![s.clone()],
        observed,
        &[],
        PlanSettings::default(),
        "101 skip power action waits: the node runs startall (UPID:x)\n",
    );
    check(
        vec![s],
        local(vec![guest(101, false)]),
        &[(101, Hold::Busy)],
        PlanSettings::default(),
        "101 skip busy: an earlier action is running\n",
    );
}
