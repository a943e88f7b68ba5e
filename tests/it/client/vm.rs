//! The client's VM calls against the simulated node: the list with and without
//! `full`, status/current and its power state, config and pending, the power calls, both
//! config updates, and the VM error texts as typed errors.

use super::*;
use felhom_agent::pve::{GuestKind, QmpStatus, VmPower};
use felhom_agent::sim::QmpState;

fn vm(id: u32) -> SimGuest {
    SimGuest::vm(id, "pve1")
}

fn wait(c: &Client, upid: &felhom_agent::pve::Upid) -> TaskOutcome {
    c.wait_task(upid, &within(10))
        .unwrap_or_else(|e| panic!("waiting for {upid}: {}", Chain(&e)))
}

#[test]
fn vm_reads() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Running));
    let mut db = vm(100)
        .running()
        .with_config("name", "db1")
        .with_config("agent", "enabled=1,fstrim_cloned_disks=1")
        .with_config("memory", "current=4096")
        .with_config("balloon", "1024")
        .with_config("description", "db server\n")
        .with_config("tags", "db;prod")
        .with_pending("cores", "4");
    db.guest_agent = true;
    sim.add_guest(db);
    sim.add_guest(vm(102).paused());
    sim.add_guest(vm(103).backup_of_stopped());
    sim.add_guest(vm(104).hibernated());
    sim.add_guest(vm(105).running().ha("started"));
    let c = client(&sim);

    let plain = c.list_qemu("pve1", false).unwrap();
    let ids: Vec<u32> = plain.iter().map(|e| e.vmid.get()).collect();
    assert_eq!(ids, [100, 102, 103, 104, 105], "VMs only");
    assert_eq!(plain[0].power(), None, "status alone cannot tell");
    assert_eq!(plain[0].maxmem, Some(4096 << 20));
    assert_eq!(plain[0].name.as_deref(), Some("db1"));
    assert_eq!(plain[3].power(), Some(VmPower::Hibernated));
    let full = c.list_qemu("pve1", true).unwrap();
    let powers: Vec<Option<VmPower>> = full.iter().map(|e| e.power()).collect();
    assert_eq!(
        powers,
        [
            Some(VmPower::Running),
            Some(VmPower::Paused),
            Some(VmPower::BackupOfStopped),
            Some(VmPower::Hibernated),
            Some(VmPower::Running),
        ]
    );

    let s = c.qemu_status("pve1", vmid(100)).unwrap();
    assert_eq!(
        (s.qmpstatus.clone(), s.power.clone()),
        (QmpStatus::Running, VmPower::Running)
    );
    assert!(s.agent && !s.ha_managed);
    let s = c.qemu_status("pve1", vmid(103)).unwrap();
    assert_eq!(s.power, VmPower::BackupOfStopped);
    assert!(s.power.leave_alone());
    assert_eq!(s.lock.as_deref(), Some("backup"));
    let s = c.qemu_status("pve1", vmid(105)).unwrap();
    assert_eq!(
        (s.ha_managed, s.ha_state.as_deref()),
        (true, Some("started"))
    );

    let cfg = c.qemu_config("pve1", vmid(100), true).unwrap();
    assert_eq!(cfg.memory, Some(4096), "`current=4096` decoded");
    assert_eq!(cfg.effective_cores(), 1);
    assert_eq!(cfg.effective_sockets(), 1);
    assert_eq!(cfg.balloon, Some(1024));
    assert_eq!(cfg.description.as_deref(), Some("db server"));
    assert!(cfg.agent_enabled());
    assert_eq!(cfg.digest.len(), 40);
    let merged = c.qemu_config("pve1", vmid(100), false).unwrap();
    assert_eq!(merged.cores, Some(4), "pending merged in");
    assert_eq!(merged.digest, cfg.digest);
    let hib = c.qemu_config("pve1", vmid(104), true).unwrap();
    assert!(hib.is_hibernated());

    let pending = c.qemu_pending("pve1", vmid(100)).unwrap();
    let cores = pending.iter().find(|p| p.key == "cores").unwrap();
    assert!(cores.is_pending());
    assert_eq!(cores.pending, Some(serde_json::json!(4)));
    assert_eq!(
        pending,
        c.guest_pending(GuestKind::Qemu, "pve1", vmid(100)).unwrap()
    );
    let memory = pending.iter().find(|p| p.key == "memory").unwrap();
    assert_eq!(
        felhom_agent::pve::qemu::memory_mib(memory.value.as_ref().unwrap()),
        Ok(4096)
    );

    let res = c.cluster_resources().unwrap();
    let kinds: Vec<_> = res.iter().map(|r| (r.vmid.get(), r.guest_kind())).collect();
    assert!(kinds.contains(&(101, Some(GuestKind::Lxc))));
    assert!(kinds.contains(&(100, Some(GuestKind::Qemu))));
    let paused = res.iter().find(|r| r.vmid.get() == 102).unwrap();
    assert_eq!(paused.status, "paused");

    // A VM asked for as a container, and the reverse, is not there.
    let e = http_err(c.lxc_config("pve1", vmid(100), true));
    assert!(e.is_config_missing(), "{e}");
    let e = http_err(c.qemu_status("pve1", vmid(101)));
    assert!(e.is_config_missing(), "{e}");
}

#[test]
fn vm_power_calls_and_their_tasks() {
    let sim = start(SimOptions::default());
    sim.add_guest(vm(100).with_pending("cores", "2"));
    let c = client(&sim);
    let upid = c
        .qemu_power("pve1", vmid(100), PowerOp::Start, &no_params())
        .unwrap();
    assert_eq!(upid.kind, GuestKind::Qemu.power_task(PowerOp::Start));
    assert_eq!(wait(&c, &upid), TaskOutcome::Ok);
    let s = c.qemu_status("pve1", vmid(100)).unwrap();
    assert_eq!(s.power, VmPower::Running);
    assert_eq!(
        c.qemu_config("pve1", vmid(100), true).unwrap().cores,
        Some(2)
    );

    // A shutdown without a timeout is refused by the client, never sent.
    let e = c
        .qemu_power("pve1", vmid(100), PowerOp::Shutdown, &no_params())
        .unwrap_err();
    assert!(matches!(e, ApiError::Config(_)), "{e}");
    assert!(!e.is_outcome_unknown() && !e.is_no_answer());
    assert!(sim
        .mutations()
        .iter()
        .all(|r| !r.path.ends_with("/shutdown")));

    let shutdown = params(&[("timeout", "30"), ("forceStop", "0")]);
    let upid = c
        .guest_power(
            GuestKind::Qemu,
            "pve1",
            vmid(100),
            PowerOp::Shutdown,
            &shutdown,
        )
        .unwrap();
    assert_eq!(upid.kind, "qmshutdown");
    assert_eq!(wait(&c, &upid), TaskOutcome::Ok);
    assert_eq!(
        c.qemu_status("pve1", vmid(100)).unwrap().power,
        VmPower::Stopped
    );

    // Containers go through the same generic call.
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let upid = c
        .guest_power(
            GuestKind::Lxc,
            "pve1",
            vmid(101),
            PowerOp::Start,
            &no_params(),
        )
        .unwrap();
    assert_eq!(upid.kind, "vzstart");
    assert_eq!(wait(&c, &upid), TaskOutcome::Ok);
}

#[test]
fn vm_failures_are_classified() {
    let sim = start(SimOptions {
        shutdown_duration: Duration::from_secs(3),
        ..SimOptions::default()
    });
    sim.add_guest(vm(100).running());
    sim.add_guest(vm(101).paused());
    sim.add_guest(vm(102).running());
    sim.update_guest(102, |g| g.lock = Some("backup".into()));
    sim.add_guest(vm(103).running());
    // Starts a running VM on purpose, to see the task fail.
    sim.allow_violations();
    let c = client(&sim);
    let start_task = |id| {
        c.qemu_power("pve1", vmid(id), PowerOp::Start, &no_params())
            .unwrap()
    };
    let out = wait(&c, &start_task(100));
    assert_eq!(out.failure(), Some(TaskFailure::AlreadyRunning), "{out}");
    let e = http_err(c.qemu_power(
        "pve1",
        vmid(101),
        PowerOp::Shutdown,
        &params(&[("timeout", "10")]),
    ));
    assert!(e.is_paused(), "{e}");
    assert_eq!(e.failure(), Some(TaskFailure::Paused));
    let stop = c
        .qemu_power("pve1", vmid(102), PowerOp::Stop, &no_params())
        .unwrap();
    let out = wait(&c, &stop);
    assert_eq!(
        out.failure(),
        Some(TaskFailure::Locked("backup".into())),
        "{out}"
    );
    let shutdown = c
        .qemu_power(
            "pve1",
            vmid(103),
            PowerOp::Shutdown,
            &params(&[("timeout", "0")]),
        )
        .unwrap();
    let out = wait(&c, &shutdown);
    assert_eq!(out.failure(), Some(TaskFailure::ShutdownTimeout), "{out}");
}

#[test]
fn vm_config_updates_sync_and_async() {
    let sim = start(SimOptions::default());
    sim.add_guest(
        vm(100)
            .running()
            .with_config("balloon", "2048")
            .with_config("hotplug", "network,disk,memory")
            .with_config("numa", "1"),
    );
    let c = client(&sim);
    let digest = c.qemu_config("pve1", vmid(100), true).unwrap().digest;
    let put = params(&[("cores", "2"), ("onboot", "1"), ("digest", &digest)]);
    assert_eq!(c.qemu_set_config("pve1", vmid(100), &put), Ok(None));
    let cfg = c.qemu_config("pve1", vmid(100), true).unwrap();
    assert_eq!((cfg.effective_onboot(), cfg.effective_cores()), (true, 1));
    assert_eq!(
        c.qemu_config("pve1", vmid(100), false).unwrap().cores,
        Some(2)
    );
    // The same digest again: the config changed meanwhile.
    let e = http_err(c.qemu_set_config(
        "pve1",
        vmid(100),
        &params(&[("onboot", "0"), ("digest", &digest)]),
    ));
    assert!(e.is_digest_mismatch(), "{e}");
    let e = http_err(c.qemu_set_config("pve1", vmid(100), &params(&[("memory", "1024")])));
    assert!(e.is_balloon_too_large(), "{e}");
    assert_eq!(e.failure(), Some(TaskFailure::BalloonTooLarge));
    // A live hotplug that fails names its key.
    let e = http_err(c.qemu_set_config(
        "pve1",
        vmid(100),
        &params(&[("memory", "768"), ("balloon", "512")]),
    ));
    assert_eq!(e.status(), Some(400));
    let problems = e.hotplug_problems();
    assert_eq!(problems.len(), 1, "{e}");
    assert_eq!(problems[0].0, "memory");
    assert_eq!(e.failure(), Some(TaskFailure::HotplugProblem));

    // The asynchronous update is a qmconfig task.
    let upid = c
        .qemu_set_config_async(
            "pve1",
            vmid(100),
            &params(&[("memory", "5000"), ("balloon", "1024")]),
        )
        .unwrap()
        .expect("a task");
    assert_eq!(Some(upid.kind.as_str()), GuestKind::Qemu.config_task());
    assert_eq!(wait(&c, &upid), TaskOutcome::Ok);
    assert_eq!(
        c.qemu_config("pve1", vmid(100), true).unwrap().memory,
        Some(5120)
    );
    let upid = c
        .qemu_set_config_async(
            "pve1",
            vmid(100),
            &params(&[("memory", "512"), ("balloon", "256")]),
        )
        .unwrap()
        .unwrap();
    let out = wait(&c, &upid);
    assert_eq!(out.failure(), Some(TaskFailure::HotplugProblem), "{out}");
    // With background_delay a quick task's success is a null answer.
    let quick = params(&[("onboot", "0"), ("background_delay", "5")]);
    assert_eq!(c.qemu_set_config_async("pve1", vmid(100), &quick), Ok(None));
    assert_eq!(sim.guest(100).unwrap().qmp, QmpState::Running);
}
