//! The VM config update on a guest value: what goes pending on a running VM, what
//! applies at once, the balloon check, hotplug rounding and errors.

use super::*;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn update(pairs: &[(&str, &str)]) -> Update {
    parse(&params(pairs)).unwrap()
}

fn running_vm() -> SimGuest {
    SimGuest::vm(100, "pve1").running()
}

#[test]
fn parse_checks_the_request_itself() {
    let err = |pairs: &[(&str, &str)]| parse(&params(pairs)).unwrap_err();
    let e = err(&[("digest", "ab")]);
    assert_eq!(
        (e.status, e.message.as_str()),
        (500, "no options specified")
    );
    let e = err(&[("cores", "2"), ("skiplock", "1")]);
    assert_eq!(e.errors["skiplock"], "Only root may use this option.");
    let e = err(&[("cores", "2"), ("delete", "cores")]);
    assert_eq!(
        e.errors["delete"],
        "you can't use '-cores' and -delete cores' at the same time"
    );
    let e = err(&[("delete", "swap")]);
    assert_eq!(e.errors["delete"], "unknown option 'swap'");
    let e = err(&[("cores", "2"), ("revert", "cores")]);
    assert!(e.errors.contains_key("delete"), "qemu-server's key: {e:?}");
    let u = update(&[("delete", "cdrom,vcpus"), ("background_delay", "5")]);
    assert_eq!(u.delete, ["ide2", "vcpus"]);
    assert!(u.set.is_empty());
}

#[test]
fn running_vm_takes_fast_keys_at_once_and_leaves_cpu_and_memory_pending() {
    let mut g = running_vm();
    let u = update(&[
        ("cores", "4"),
        ("sockets", "2"),
        ("memory", "4096"),
        ("description", "db server\n\n"),
        ("onboot", "1"),
        ("tags", "Prod,db"),
    ]);
    apply(&mut g, true, &u).unwrap();
    assert_eq!(g.description.as_deref(), Some("db server"));
    assert_eq!(g.onboot, Some(true));
    assert_eq!(g.tags.as_deref(), Some("db;prod"));
    assert_eq!((g.cores, g.memory), (Some(1), Some(2048)), "still the old");
    assert_eq!(g.pending["cores"], "4");
    assert_eq!(g.pending["sockets"], "2");
    assert_eq!(g.pending["memory"], "4096");
    // The same again changes nothing: the values wait in pending already.
    let before = g.clone();
    apply(&mut g, true, &update(&[("cores", "4"), ("onboot", "1")])).unwrap();
    assert_eq!(g, before);
    // Deleting fast keys is immediate; deleting a cold key waits.
    apply(
        &mut g,
        true,
        &update(&[("delete", "description,tags,cores")]),
    )
    .unwrap();
    assert_eq!((g.description.as_deref(), g.tags.as_deref()), (None, None));
    assert_eq!(g.pending.get("cores"), None);
    assert_eq!(g.pending["delete"], "cores");
}

#[test]
fn stopped_vm_applies_everything_pending_and_drops_no_ops() {
    let mut g = SimGuest::vm(100, "pve1")
        .with_pending("sockets", "2")
        .with_pending_delete("numa");
    apply(
        &mut g,
        false,
        &update(&[("cores", "2"), ("memory", "2048")]),
    )
    .unwrap();
    assert_eq!(g.cores, Some(2));
    assert_eq!(g.other["sockets"], "2", "what waited is applied too");
    assert!(!g.other.contains_key("numa"));
    assert!(g.pending.is_empty());
    // An empty description is no description.
    let mut d = SimGuest::vm(101, "pve1").with_config("description", "x");
    apply(&mut d, false, &update(&[("description", "")])).unwrap();
    assert_eq!(d.description, None);
}

#[test]
fn memory_text_is_compared_as_text() {
    // `current=2048` and `2048` differ to cleanup_pending: the write leaves a pending
    // entry on a running VM that never clears while it runs.
    let mut g = running_vm().with_config("memory", "current=2048");
    apply(&mut g, true, &update(&[("memory", "2048")])).unwrap();
    assert_eq!(g.pending["memory"], "2048");
    let mut same = running_vm();
    apply(&mut same, true, &update(&[("memory", "2048")])).unwrap();
    assert!(same.pending.is_empty());
}

#[test]
fn revert_drops_pending_changes() {
    let mut g = running_vm()
        .with_pending("cores", "4")
        .with_pending("vcpus", "2");
    apply(&mut g, true, &update(&[("revert", "cores,vcpus")])).unwrap();
    assert!(g.pending.is_empty(), "{:?}", g.pending);
    assert_eq!(g.cores, Some(1));
}

#[test]
fn balloon_must_stay_within_memory() {
    let g = SimGuest::vm(100, "pve1").with_config("balloon", "2048");
    let digest = "d";
    let check_with = |pairs: &[(&str, &str)]| check(&g, digest, &update(pairs));
    let e = check_with(&[("memory", "1024")]).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (
            500,
            "balloon value too large (must be smaller than assigned memory)"
        )
    );
    // Deleting the balloon in the same request does not help: only a new value does.
    assert!(check_with(&[("memory", "1024"), ("delete", "balloon")]).is_err());
    assert!(check_with(&[("memory", "1024"), ("balloon", "512")]).is_ok());
    assert!(check_with(&[("memory", "1024"), ("balloon", "0")]).is_ok());
    assert!(check_with(&[("balloon", "4096")]).is_err());
    assert!(check_with(&[("memory", "current=4096")]).is_ok());
    // A pending memory counts, as the config as it will be.
    let p = g.clone().with_pending("memory", "1024");
    assert!(check(&p, digest, &update(&[("balloon", "1536")])).is_err());
}

#[test]
fn digest_and_lock_checks() {
    let g = SimGuest::vm(100, "pve1").hibernated();
    let e = check(&g, "now", &update(&[("cores", "2"), ("digest", "old")])).unwrap_err();
    assert_eq!(e.message, "checksum mismatch (file change by other user?)");
    let e = check(&g, "now", &update(&[("cores", "2")])).unwrap_err();
    assert_eq!(e.message, "VM is locked (suspended)");
    // Discarding the saved state is allowed, and unlocks.
    let u = update(&[("delete", "vmstate")]);
    check(&g, "now", &u).unwrap();
    let mut h = g.clone();
    apply(&mut h, false, &u).unwrap();
    assert_eq!(h.lock, None);
    assert!(!h.other.contains_key("vmstate") && !h.other.contains_key("runningmachine"));
}

#[test]
fn hotplug_features_decide_what_runs_live() {
    let mut g = running_vm()
        .with_config("hotplug", "network,disk,cpu,memory")
        .with_config("numa", "1")
        .with_config("sockets", "2")
        .with_config("cores", "2");
    apply(&mut g, true, &update(&[("vcpus", "3"), ("memory", "3000")])).unwrap();
    assert_eq!(g.other["vcpus"], "3");
    assert_eq!(g.memory, Some(3072), "rounded up to the DIMM boundary");
    assert!(g.pending.is_empty(), "{:?}", g.pending);
    let errors = apply(&mut g, true, &update(&[("vcpus", "5"), ("memory", "512")])).unwrap_err();
    assert_eq!(
        errors["vcpus"],
        "hotplug problem - you can't add more vcpus than maxcpus"
    );
    assert!(errors["memory"].starts_with("hotplug problem - memory can't be lower than 1024 MB"));
    // Nothing is rolled back: the failed values wait in pending.
    assert_eq!(g.pending["vcpus"], "5");
    assert_eq!(g.pending["memory"], "512");
    // A balloon that switches the device off waits; one that keeps it on applies.
    let mut b = running_vm();
    apply(&mut b, true, &update(&[("balloon", "0")])).unwrap();
    assert_eq!(b.pending["balloon"], "0");
    let mut b = running_vm();
    apply(&mut b, true, &update(&[("balloon", "1024")])).unwrap();
    assert_eq!(b.other["balloon"], "1024");
}

#[test]
fn dimm_rounding() {
    assert_eq!(memory_hotplug(2048, 3000), Ok(3072));
    assert_eq!(memory_hotplug(2048, 2048), Ok(2048));
    assert_eq!(
        memory_hotplug(3072, 2000),
        Ok(1536),
        "unplugged from the top"
    );
    assert_eq!(
        memory_hotplug(1024, 17409),
        Ok(18432),
        "past the 512 MiB DIMMs"
    );
    assert!(memory_hotplug(2048, 1000).is_err());
    assert_eq!(
        memory_hotplug(2048, 1 << 20).unwrap_err(),
        "you cannot add more memory than max mem 524288 MB!"
    );
}
