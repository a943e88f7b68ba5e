//! Every synchronous error class: already running / not running, locks, digests,
//! missing config, quorum, 400, 401, 501, never sent, no answer, 596.

use super::{client, client_with, guest, http_err, no_params, params, start, two_nodes, vmid};
use felhom_agent::log::Chain;
use felhom_agent::pve::{PowerOp, Retry, TaskFailure};
use felhom_agent::sim::{Effect, ErrorStyle, FaultRule, Faults, Match, PowerState, SimOptions};
use std::time::{Duration, Instant};

#[test]
fn already_running_and_not_running_in_both_error_styles() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Running));
    sim.add_guest(guest(102, "pve1", PowerState::Stopped));
    // Sends intents the guests already meet, to see how their refusals decode.
    sim.allow_violations();
    let c = client(&sim);
    for style in [ErrorStyle::Modern, ErrorStyle::Legacy] {
        sim.set_error_style(style);
        let e = http_err(c.lxc_power("pve1", vmid(101), PowerOp::Start, &no_params()));
        assert_eq!(e.status(), Some(500));
        assert_eq!(e.message(), Some("CT 101 already running"));
        assert!(e.is_already_running() && !e.is_not_running());
        for op in [PowerOp::Stop, PowerOp::Shutdown] {
            let e = http_err(c.lxc_power("pve1", vmid(102), op, &no_params()));
            assert!(e.is_not_running(), "{op}: {e}");
            assert_eq!(e.message(), Some("CT 102 not running"));
        }
    }
}

#[test]
fn config_writes_and_their_errors_in_both_error_styles() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Running));
    let mut locked = guest(102, "pve1", PowerState::Stopped);
    locked.lock = Some("backup".into());
    sim.add_guest(locked);
    let c = client(&sim);

    // A write that needs every escape: `;` `,` `+`, spaces and newlines.
    let before = c.lxc_config("pve1", vmid(101), false).unwrap();
    let write = params(&[
        ("cores", "2"),
        ("memory", "1024"),
        ("onboot", "1"),
        ("tags", "Web,prod;db"),
        ("description", "a+b c\nline 2"),
        ("delete", "swap"),
        ("digest", &before.digest),
    ]);
    assert_eq!(c.lxc_set_config("pve1", vmid(101), &write), Ok(None));
    let after = c.lxc_config("pve1", vmid(101), false).unwrap();
    assert_eq!(after.cores, Some(2));
    assert_eq!(after.memory, Some(1024));
    assert_eq!(after.onboot, Some(true));
    assert_eq!(after.tags.as_deref(), Some("db;prod;web"));
    assert_eq!(after.description.as_deref(), Some("a+b c\nline 2\n"));
    assert_eq!(after.swap, None);
    assert_ne!(after.digest, before.digest);

    for style in [ErrorStyle::Modern, ErrorStyle::Legacy] {
        sim.set_error_style(style);
        let e = http_err(c.lxc_set_config("pve1", vmid(102), &params(&[("cores", "1")])));
        assert_eq!(e.lock_name(), Some("backup"), "{e}");

        let stale = params(&[("cores", "3"), ("digest", &before.digest)]);
        let e = http_err(c.lxc_set_config("pve1", vmid(101), &stale));
        assert!(e.is_digest_mismatch(), "{e}");
        assert_eq!(e.status(), Some(500));

        let e = http_err(c.lxc_set_config("pve1", vmid(101), &params(&[("onboot", "true")])));
        assert!(e.is_param_error(), "{e}");
        let errors = e.param_errors().unwrap();
        assert!(
            errors["onboot"].contains("type check ('boolean') failed"),
            "{errors:?}"
        );

        let e = http_err(c.lxc_set_config("pve1", vmid(101), &params(&[("bogus", "1")])));
        assert!(e.param_errors().unwrap().contains_key("bogus"), "{e}");
    }
    assert_eq!(
        c.lxc_config("pve1", vmid(101), false).unwrap().cores,
        Some(2)
    );
}

#[test]
fn a_human_edit_changes_the_digest() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let c = client(&sim);
    let read = c.lxc_config("pve1", vmid(101), false).unwrap();
    sim.update_guest(101, |g| g.cores = Some(4));
    let write = params(&[("cores", "2"), ("digest", &read.digest)]);
    let e = http_err(c.lxc_set_config("pve1", vmid(101), &write));
    assert!(e.is_digest_mismatch(), "{e}");
    assert_eq!(sim.guest(101).unwrap().cores, Some(4));
}

#[test]
fn a_config_write_during_a_shutdown_hits_the_lock_timeout() {
    let sim = start(SimOptions {
        shutdown_duration: Duration::from_secs(3),
        lock_wait: Duration::from_millis(200),
        ..SimOptions::default()
    });
    sim.add_guest(guest(101, "pve1", PowerState::Running));
    // Races a config write against the shutdown on purpose, to see the lock timeout.
    sim.allow_violations();
    let c = client(&sim);
    let upid = c
        .lxc_power(
            "pve1",
            vmid(101),
            PowerOp::Shutdown,
            &params(&[("timeout", "60")]),
        )
        .unwrap();
    assert_eq!(upid.kind, "vzshutdown");
    let e = http_err(c.lxc_set_config("pve1", vmid(101), &params(&[("cores", "2")])));
    assert!(e.is_lock_timeout(), "{e}");
    assert_eq!(e.failure(), Some(TaskFailure::LockTimeout));
}

#[test]
fn a_guest_on_another_node_has_no_config_here() {
    let sim = start(two_nodes());
    sim.add_guest(guest(201, "pve2", PowerState::Stopped));
    let c = client(&sim);
    assert!(c.lxc_config("pve2", vmid(201), false).is_ok());
    let e = http_err(c.lxc_config("pve1", vmid(201), false));
    assert!(e.is_config_missing(), "{e}");
    let e = http_err(c.lxc_power("pve1", vmid(201), PowerOp::Start, &no_params()));
    assert!(e.is_config_missing(), "{e}");
    let e = http_err(c.lxc_status("pve1", vmid(201)));
    assert!(e.is_config_missing(), "{e}");
}

#[test]
fn without_quorum_starts_fail_and_reads_work() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    sim.set_quorate(false);
    let c = client(&sim);
    let e = http_err(c.lxc_power("pve1", vmid(101), PowerOp::Start, &no_params()));
    assert!(e.is_no_quorum(), "{e}");
    assert_eq!(c.list_lxc("pve1").unwrap().len(), 1);
}

#[test]
fn a_wrong_token_is_unauthorized_and_never_echoed() {
    let sim = start(SimOptions::default());
    let wrong = "00000000-wrong-secret-0000";
    let c = client_with(&sim.url(), sim.token_id(), wrong, Duration::from_secs(5));
    let e = http_err(c.version());
    assert!(e.is_unauthorized(), "{e}");
    assert_eq!(e.message(), Some("Authentication failed!"));
    let shown = format!("{e} {e:?} {} {c:?}", Chain(&e));
    assert!(
        !shown.contains(wrong) && !shown.contains(sim.token_secret()),
        "{shown}"
    );
}

#[test]
fn an_unknown_path_is_501() {
    let sim = start(SimOptions::default());
    let e = http_err(client(&sim).get_raw("/nodes/pve1/foo"));
    assert_eq!(e.status(), Some(501));
    assert!(e.message().unwrap().contains("not implemented"), "{e}");
}

#[test]
fn a_closed_port_is_never_sent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client_with(
        &format!("http://127.0.0.1:{port}"),
        "agent@pve!reconciler",
        "secret",
        Duration::from_secs(5),
    );
    let e = c.version().unwrap_err();
    assert!(e.is_never_sent(), "{e:?}");
    let e = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap_err();
    assert!(e.is_never_sent(), "{e:?}");
}

#[test]
fn a_reset_or_a_slow_answer_is_no_answer() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    sim.set_faults(Faults::rule(FaultRule::new(Match::any(), Effect::Reset)));
    let c = client(&sim);
    let e = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap_err();
    assert!(e.is_no_answer(), "{e:?}");

    sim.set_faults(Faults::rule(FaultRule::new(
        Match::any(),
        Effect::Delay(Duration::from_millis(1500)),
    )));
    // One attempt: a read would be repeated (see raw.rs), this is about the class.
    let slow = client_with(
        &sim.url(),
        sim.token_id(),
        sim.token_secret(),
        Duration::from_secs(1),
    )
    .with_retry(Retry::NEVER);
    let started = Instant::now();
    let e = slow.version().unwrap_err();
    assert!(e.is_no_answer(), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(1450));
}

#[test]
fn a_proxy_timeout_is_596() {
    let sim = start(SimOptions::default());
    sim.set_faults(Faults::rule(FaultRule::new(
        Match::any(),
        Effect::StatusAfter(596),
    )));
    let e = http_err(client(&sim).list_lxc("pve1"));
    assert_eq!(e.status(), Some(596));
    assert_eq!(e.message(), Some("Connection timed out"));
    assert!(e.is_retryable_read());
}

#[test]
fn a_vmid_sent_as_a_string_decodes() {
    let sim = start(SimOptions {
        vmid_as_string: true,
        ..SimOptions::default()
    });
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let c = client(&sim);
    assert_eq!(c.list_lxc("pve1").unwrap()[0].vmid, vmid(101));
    assert_eq!(c.lxc_status("pve1", vmid(101)).unwrap().vmid, vmid(101));
}
