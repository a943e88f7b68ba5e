//! Decoding the reference's illustrative bodies and the Perl-typed variants of them.

use super::*;
use serde_json::json;

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

#[test]
fn lxc_list_entries_decode_with_string_vmids_and_absent_fields() {
    let data = json!([
        {"vmid":101,"name":"web1","type":"lxc","status":"running","pid":23456,"cpus":2,
         "maxmem":1073741824,"mem":61440000,"maxswap":536870912,"swap":0,
         "maxdisk":8589934592u64,"disk":1342177280,"uptime":3600,"cpu":0.012,
         "netin":123456,"netout":65432,"diskread":0,"diskwrite":0,"tags":"prod;web"},
        {"vmid":"102","name":"CT102","type":"lxc","status":"stopped","cpus":"0.5",
         "maxmem":"536870912","mem":0,"maxswap":0,"swap":0,"maxdisk":4294967296u64,"disk":0,
         "uptime":0,"cpu":0,"template":1,"lock":"backup","pressurecpusome":0}
    ]);
    let list: Vec<GuestEntry> = serde_json::from_value(data).unwrap();
    assert_eq!(list[0].vmid, vmid(101));
    assert_eq!(list[0].status, PowerState::Running);
    assert_eq!(list[0].tags.as_deref(), Some("prod;web"));
    assert_eq!(list[0].cpus, Some(2.0));
    assert_eq!(list[0].maxswap, Some(512 << 20));
    assert!(!list[0].template);
    assert_eq!(list[0].lock, None);
    assert_eq!(list[1].vmid, vmid(102));
    assert_eq!(list[1].status, PowerState::Stopped);
    assert_eq!(list[1].cpus, Some(0.5));
    assert_eq!(list[1].maxmem, Some(512 << 20));
    assert!(list[1].template);
    assert_eq!(list[1].lock.as_deref(), Some("backup"));
}

#[test]
fn run_state_keeps_unknown_text() {
    let s: PowerState = serde_json::from_value(json!("paused")).unwrap();
    assert_eq!(s, PowerState::Unknown("paused".into()));
    assert_eq!(s.to_string(), "paused");
    assert_eq!(
        serde_json::to_value(PowerState::Running).unwrap(),
        json!("running")
    );
}

#[test]
fn lxc_config_defaults_and_other_keys() {
    let data = json!({"arch":"amd64","cores":2,"memory":1024,"swap":512,"onboot":1,
        "hostname":"web1","ostype":"debian","unprivileged":1,
        "rootfs":"local-lvm:vm-101-disk-0,size=8G",
        "description":"managed by reconciler\n","tags":"prod;web",
        "digest":"0f3c9a1d5e7b2c4a6f8e0d1c3b5a79e8f6d4c2b0"});
    let c: LxcConfig = serde_json::from_value(data).unwrap();
    assert_eq!(c.cores, Some(2));
    assert_eq!(c.memory, Some(1024));
    assert_eq!(c.effective_swap(), 512);
    assert!(c.effective_onboot());
    assert_eq!(c.description.as_deref(), Some("managed by reconciler\n"));
    assert_eq!(c.hostname.as_deref(), Some("web1"));
    assert_eq!(c.digest, "0f3c9a1d5e7b2c4a6f8e0d1c3b5a79e8f6d4c2b0");
    assert_eq!(c.other.get("arch"), Some(&json!("amd64")));
    assert_eq!(c.other.get("unprivileged"), Some(&json!(1)));
    assert!(!c.other.contains_key("cores"));
    assert!(!c.other.contains_key("digest"));

    let bare: LxcConfig =
        serde_json::from_value(json!({"memory":"512","onboot":"0","digest":"ab"})).unwrap();
    assert_eq!(bare.cores, None, "absent cores means all host cores");
    assert_eq!(bare.swap, None);
    assert_eq!(bare.effective_swap(), 0, "absent swap is 0, not 512");
    assert_eq!(bare.onboot, Some(false));
    assert!(!bare.effective_onboot());
    let none: LxcConfig = serde_json::from_value(json!({"digest":"ab"})).unwrap();
    assert!(!none.effective_onboot());
    assert_eq!(none.effective_memory(), 512);
    assert!(serde_json::from_value::<LxcConfig>(json!({"cores":2})).is_err());
}

#[test]
fn guest_status_flattens_ha() {
    let raw: RawGuestStatus = serde_json::from_value(json!({"vmid":101,"status":"running",
        "name":"web1","ha":{"managed":1,"state":"started"},"template":"0"}))
    .unwrap();
    let s = raw.into_status(vmid(999));
    assert_eq!(s.vmid, vmid(101));
    assert!(s.ha_managed);
    assert_eq!(s.ha_state.as_deref(), Some("started"));
    assert!(!s.template);
    let raw: RawGuestStatus =
        serde_json::from_value(json!({"status":"stopped","ha":{"managed":0},"lock":"backup"}))
            .unwrap();
    let s = raw.into_status(vmid(102));
    assert_eq!(s.vmid, vmid(102), "a missing vmid is the one asked for");
    assert!(!s.ha_managed);
    assert_eq!(s.ha_state, None);
    assert_eq!(s.lock.as_deref(), Some("backup"));
}

#[test]
fn pending_entries() {
    let list: Vec<PendingEntry> = serde_json::from_value(json!([
        {"key":"memory","value":512,"pending":1024},
        {"key":"nameserver","pending":"1.1.1.1"},
        {"key":"swap","value":512,"delete":"1"},
        {"key":"hostname","value":"web1"}
    ]))
    .unwrap();
    assert_eq!(list[0].pending, Some(json!(1024)));
    assert!(list[0].is_pending());
    assert_eq!(list[2].delete, Some(1));
    assert!(list[2].is_pending());
    assert!(!list[3].is_pending());
}

#[test]
fn cluster_resources() {
    let r: ClusterResource = serde_json::from_value(json!({"id":"lxc/101","vmid":"101",
        "type":"lxc","node":"pve1","status":"running","name":"web1","template":0,
        "maxcpu":2,"tags":"prod;web","hastate":"started"}))
    .unwrap();
    assert_eq!(r.vmid, vmid(101));
    assert_eq!(r.kind, "lxc");
    assert_eq!(r.hastate.as_deref(), Some("started"));
    let r: ClusterResource =
        serde_json::from_value(json!({"id":"qemu/100","vmid":100,"type":"qemu","node":"pve2"}))
            .unwrap();
    assert_eq!(r.status, "unknown");
}

#[test]
fn task_outcomes() {
    let table: &[(&str, TaskOutcome)] = &[
        ("OK", TaskOutcome::Ok),
        ("WARNINGS: 2", TaskOutcome::Warnings(2)),
        ("WARNINGS: x", TaskOutcome::Failed("WARNINGS: x".into())),
        (
            "CT is locked (backup)",
            TaskOutcome::Failed("CT is locked (backup)".into()),
        ),
        (
            "unexpected status",
            TaskOutcome::Failed("unexpected status".into()),
        ),
    ];
    for (s, want) in table {
        let got = TaskOutcome::from_exit_status(s);
        assert_eq!(&got, want, "{s}");
        assert_eq!(got.to_string(), *s);
    }
    assert!(TaskOutcome::Warnings(1).is_success());
    assert_eq!(
        TaskOutcome::from_exit_status("CT is locked (backup)").failure(),
        Some(TaskFailure::Locked("backup".into()))
    );

    let upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:";
    let st: TaskStatus = serde_json::from_value(json!({"upid":upid,"node":"pve1",
        "pid":107187,"status":"stopped","exitstatus":"WARNINGS: 1","type":"vzstart"}))
    .unwrap();
    assert_eq!(st.outcome(), Some(TaskOutcome::Warnings(1)));
    let st: TaskStatus = serde_json::from_value(json!({"upid":upid,"status":"running"})).unwrap();
    assert_eq!(st.outcome(), None);
    let st: TaskStatus = serde_json::from_value(json!({"upid":upid,"status":"stopped"})).unwrap();
    assert!(matches!(st.outcome(), Some(TaskOutcome::Failed(_))));
    assert!(serde_json::from_value::<TaskStatus>(json!({"upid":"x","status":"running"})).is_err());
}

#[test]
fn task_list_entries() {
    let upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:";
    let list: Vec<TaskListEntry> = serde_json::from_value(json!([
        {"upid":upid,"type":"vzstart","id":"101","starttime":1716580802,"status":"RUNNING"},
        {"upid":upid,"type":"vzstart","id":101,"starttime":"1716580802","endtime":1716580803,
         "status":"OK","user":"agent@pve"}
    ]))
    .unwrap();
    assert_eq!(list[0].status.as_deref(), Some("RUNNING"));
    assert_eq!(list[0].endtime, None);
    assert_eq!(list[1].id, "101");
    assert_eq!(list[1].starttime, 1716580802);
    assert_eq!(list[1].endtime, Some(1716580803));
}

#[test]
fn version_and_power_ops() {
    let v: Version =
        serde_json::from_value(json!({"version":"8.4.1","release":"8.4","repoid":"abc"})).unwrap();
    assert_eq!(v.version, "8.4.1");
    assert_eq!(v.release.as_deref(), Some("8.4"));
    assert_eq!(PowerOp::Start.as_str(), "start");
    assert_eq!(PowerOp::Stop.to_string(), "stop");
    assert_eq!(PowerOp::Shutdown.as_str(), "shutdown");
}
