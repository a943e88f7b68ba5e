//! Decoding qemu-server's answers (the reference's illustrative bodies and their
//! Perl-typed variants) and the status × qmpstatus × lock table.

use super::*;
use serde_json::{json, Value};

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

#[test]
fn list_entries_with_and_without_full() {
    let data = json!([
        {"vmid":100,"name":"db1","status":"running","qmpstatus":"paused","pid":4242,
         "cpus":4,"maxmem":4294967296u64,"mem":1610612736u64,"maxdisk":34359738368u64,
         "disk":0,"uptime":86400,"cpu":0.0,"netin":1,"netout":2,"tags":"prod",
         "lock":"backup","running-machine":"pc-i440fx-9.0+pve0","balloon_min":1073741824},
        {"vmid":"9000","name":"tmpl","status":"stopped","qmpstatus":"stopped","cpus":"2",
         "maxmem":"2147483648","mem":0,"maxdisk":8589934592u64,"disk":0,"uptime":0,"cpu":0,
         "template":1},
        {"vmid":101,"name":"VM 101","status":"running","cpus":1,"maxmem":536870912}
    ]);
    let list: Vec<VmEntry> = serde_json::from_value(data).unwrap();
    assert_eq!(list[0].vmid, vmid(100));
    assert_eq!(list[0].status, PowerState::Running);
    assert_eq!(list[0].qmpstatus, Some(QmpStatus::Paused));
    assert_eq!(list[0].power(), Some(VmPower::Paused));
    assert_eq!(list[0].maxmem, Some(4 << 30));
    assert_eq!(list[1].vmid, vmid(9000));
    assert!(list[1].template);
    assert_eq!(list[1].cpus, Some(2.0));
    assert_eq!(list[1].power(), Some(VmPower::Stopped));
    // The plain list cannot tell a running VM from a paused one.
    assert_eq!(list[2].qmpstatus, None);
    assert_eq!(list[2].power(), None);
}

/// One row: status, qmpstatus, lock, and what they mean.
type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<VmPower>);

/// The reference's table (docs/proxmox-api.md §9.2): status × qmpstatus × lock.
#[test]
fn power_table() {
    use VmPower::*;
    let table: &[Row] = &[
        ("stopped", Some("stopped"), None, Some(Stopped)),
        ("stopped", None, None, Some(Stopped)),
        ("stopped", None, Some("suspended"), Some(Hibernated)),
        ("stopped", None, Some("backup"), Some(Stopped)),
        ("running", Some("running"), None, Some(Running)),
        ("running", Some("running"), Some("backup"), Some(Running)),
        ("running", Some("paused"), None, Some(Paused)),
        ("running", Some("paused"), Some("backup"), Some(Paused)),
        (
            "running",
            Some("prelaunch"),
            Some("backup"),
            Some(BackupOfStopped),
        ),
        ("running", Some("prelaunch"), None, Some(Prelaunch)),
        ("running", Some("suspended"), None, Some(GuestSuspended)),
        ("running", Some("io-error"), None, Some(IoError)),
        (
            "running",
            Some("shutdown"),
            Some("backup"),
            Some(ShutDownInside),
        ),
        ("running", Some("inmigrate"), None, Some(Migrating)),
        (
            "running",
            Some("postmigrate"),
            Some("migrate"),
            Some(Migrating),
        ),
        ("running", Some("finish-migrate"), None, Some(Migrating)),
        (
            "running",
            Some("guest-panicked"),
            None,
            Some(Other("guest-panicked".into())),
        ),
        ("running", None, None, None),
        ("unknown", Some("running"), None, None),
    ];
    for (status, qmp, lock, want) in table {
        let got = VmPower::from_parts(
            &PowerState::parse(status),
            qmp.map(QmpStatus::parse).as_ref(),
            *lock,
        );
        assert_eq!(got, *want, "{status} / {qmp:?} / {lock:?}");
    }
    assert!(Running.is_running() && !Running.leave_alone() && Running.has_process());
    assert!(Stopped.is_stopped() && !Stopped.leave_alone() && !Stopped.has_process());
    for p in [Hibernated, Paused, IoError, BackupOfStopped, ShutDownInside] {
        assert!(p.leave_alone() && !p.is_running() && !p.is_stopped(), "{p}");
    }
    assert!(!Hibernated.has_process() && BackupOfStopped.has_process());
    assert_eq!(Paused.run_state(), PowerState::Unknown("paused".into()));
    assert_eq!(Running.run_state(), PowerState::Running);
    assert_eq!(BackupOfStopped.to_string(), "backup-prelaunch");
    assert_eq!(serde_json::to_value(IoError).unwrap(), json!("io-error"));
}

#[test]
fn qmp_status_round_trips_and_keeps_unknown_text() {
    for s in [
        "running",
        "paused",
        "prelaunch",
        "io-error",
        "suspended",
        "shutdown",
        "inmigrate",
        "postmigrate",
        "finish-migrate",
        "stopped",
        "colo",
    ] {
        assert_eq!(QmpStatus::parse(s).as_str(), s);
    }
    assert_eq!(
        QmpStatus::parse("watchdog"),
        QmpStatus::Other("watchdog".into())
    );
}

#[test]
fn status_current_flattens_ha_and_derives_power() {
    let raw: RawVmStatus = serde_json::from_value(json!({
        "vmid":100,"status":"running","qmpstatus":"prelaunch","lock":"backup",
        "ha":{"managed":1,"state":"started"},"agent":1,"name":"db1","cpus":2,
        "maxmem":2147483648u64,"spice":1,"clipboard":null}))
    .unwrap();
    let s = raw.into_status(vmid(999));
    assert_eq!(s.vmid, vmid(100));
    assert_eq!(s.power, VmPower::BackupOfStopped);
    assert!(s.ha_managed && s.agent);
    assert_eq!(s.ha_state.as_deref(), Some("started"));
    // Without qmpstatus (not expected from status/current) PVE's fallback is assumed.
    let raw: RawVmStatus =
        serde_json::from_value(json!({"status":"stopped","ha":{"managed":0}})).unwrap();
    let s = raw.into_status(vmid(101));
    assert_eq!(s.vmid, vmid(101));
    assert_eq!(s.qmpstatus, QmpStatus::Stopped);
    assert_eq!(s.power, VmPower::Stopped);
    assert!(!s.agent && !s.ha_managed);
}

#[test]
fn memory_in_every_form() {
    let table: &[(Value, Option<u64>)] = &[
        (json!("2048"), Some(2048)),
        (json!("current=2048"), Some(2048)),
        (json!(" current=4096 "), Some(4096)),
        (json!("4096,max=65536"), Some(4096)),
        (json!("max=65536,current=1024"), Some(1024)),
        (json!(2048), Some(2048)),
        (json!("2048M"), None),
        (json!("max=65536"), None),
        (json!(""), None),
        (json!(true), None),
    ];
    for (v, want) in table {
        assert_eq!(memory_mib(v).ok(), *want, "{v}");
    }
}

#[test]
fn config_defaults_and_perl_types() {
    let data = json!({"boot":"order=scsi0;net0","cores":2,"sockets":1,"memory":"4096",
        "balloon":2048,"cpu":"x86-64-v2-AES","numa":0,"ostype":"l26",
        "scsi0":"local-lvm:vm-100-disk-0,iothread=1,size=32G",
        "agent":"1","onboot":1,"startup":"order=2,up=30,down=90","tags":"db;prod",
        "description":"managed by reconciler","name":"db1",
        "digest":"3b0c9a1d5e7b2c4a6f8e0d1c3b5a79e8f6d4c2b0"});
    let c: VmConfig = serde_json::from_value(data).unwrap();
    assert_eq!(c.effective_cores(), 2);
    assert_eq!(c.max_vcpus(), 2);
    assert_eq!(c.effective_memory(), 4096);
    assert_eq!(c.balloon, Some(2048));
    assert_eq!(c.numa, Some(false));
    assert!(c.effective_onboot());
    assert!(c.agent_enabled());
    assert_eq!(c.startup_down(), Some(90));
    assert_eq!(c.description.as_deref(), Some("managed by reconciler"));
    assert_eq!(c.other.get("ostype"), Some(&json!("l26")));
    assert!(!c.other.contains_key("memory") && !c.other.contains_key("digest"));
    assert!(!c.is_hibernated());
    assert_eq!(c.hotplug_features(), Hotplug::parse(Some("1")));

    let bare: VmConfig = serde_json::from_value(json!({"digest":"ab"})).unwrap();
    assert_eq!(bare.effective_cores(), 1, "absent cores means 1 for a VM");
    assert_eq!(bare.effective_sockets(), 1);
    assert_eq!(bare.effective_memory(), 512);
    assert!(!bare.effective_onboot() && !bare.agent_enabled());
    assert_eq!(bare.startup_down(), None);

    let old: VmConfig = serde_json::from_value(json!({"memory":1024,"cores":"4",
        "sockets":"2","vcpus":6,"onboot":"0","template":1,"lock":"suspended",
        "vmstate":"local-lvm:vm-100-state-suspend-2024-05-24","agent":"enabled=0,type=virtio",
        "startup":"down=0","digest":"ab"}))
    .unwrap();
    assert_eq!(old.memory, Some(1024), "before qemu-server 8.0.8: a number");
    assert_eq!(old.max_vcpus(), 8);
    assert_eq!(old.vcpus, Some(6));
    assert!(old.template && old.is_hibernated());
    assert!(
        !old.agent_enabled(),
        "a disabled agent's other keys do not enable it"
    );
    assert_eq!(old.startup_down(), None, "down=0 is ignored");

    let keyed: VmConfig =
        serde_json::from_value(json!({"memory":"current=3072","agent":"enabled=yes",
            "digest":"ab"}))
        .unwrap();
    assert_eq!(keyed.memory, Some(3072));
    assert!(keyed.agent_enabled());
    let err = serde_json::from_value::<VmConfig>(json!({"memory":"lots","digest":"ab"}));
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("expected memory in MiB"));
}

#[test]
fn hotplug_features() {
    let default = Hotplug::parse(None);
    assert!(default.network && default.disk && default.usb);
    assert!(!default.cpu && !default.memory && !default.cloudinit);
    assert_eq!(Hotplug::parse(Some("1")), default);
    assert_eq!(Hotplug::parse(Some("0")), Hotplug::default());
    let h = Hotplug::parse(Some("disk,network,cpu,memory"));
    assert!(h.cpu && h.memory && !h.usb);
}
