//! Config keys by kind of guest: the VM key table (qemu-server
//! `src/PVE/QemuServer.pm` `$confdesc`, `$confdesc_cloudinit`, `$fast_plug_option`,
//! `vmconfig_hotplug_pending`), the lookup for either kind (the container table is in
//! `schema`), and how a value is typed in JSON.
//!
//! Imports the leaves `model` and `schema`.

use super::model::SimKind;
use super::schema::{lxc_key, KeyDesc, Kind, Plug};

const LOCKS: &[&str] = &[
    "backup",
    "clone",
    "create",
    "migrate",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
];
const OSTYPES: &[&str] = &[
    "other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24",
    "l26", "solaris",
];
const SCSIHW: &[&str] = &[
    "lsi",
    "lsi53c810",
    "virtio-scsi-pci",
    "virtio-scsi-single",
    "megasas",
    "pvscsi",
];
const ANY: Kind = Kind::Str { max_len: None };

/// Looks up a config key of a guest of `kind`; `None` for keys PVE does not define.
pub(crate) fn key(kind: SimKind, name: &str) -> Option<KeyDesc> {
    match kind {
        SimKind::Lxc => lxc_key(name),
        SimKind::Qemu => qemu_key(name),
    }
}

/// Looks up a VM config key; `None` for keys qemu-server does not define.
pub(crate) fn qemu_key(name: &str) -> Option<KeyDesc> {
    use Plug::*;
    let d = |kind, plug| Some(KeyDesc { kind, plug });
    let int = |min, max| Kind::Int { min, max };
    match name {
        // `$fast_plug_option` and the cloud-init keys: written at once, never pending.
        "description" => d(Kind::Description, Fast),
        "onboot" | "protection" => d(Kind::Bool, Fast),
        "tags" => d(Kind::Tags, Fast),
        "name" => d(Kind::DnsName, Fast),
        "lock" => d(Kind::Enum(LOCKS), Fast),
        "shares" => d(int(0, Some(50_000)), Fast),
        "migrate_speed" => d(int(0, None), Fast),
        "migrate_downtime" => d(
            Kind::Number {
                min: 0.0,
                max: f64::MAX,
            },
            Fast,
        ),
        "startup" | "hookscript" | "vmstatestorage" | "ciuser" | "cipassword" | "citype"
        | "ciupgrade" | "cicustom" | "searchdomain" | "nameserver" | "sshkeys" => d(ANY, Fast),
        // Through the cgroup, whatever `hotplug` says.
        "cpulimit" => d(
            Kind::Number {
                min: 0.0,
                max: 128.0,
            },
            Hot,
        ),
        "cpuunits" => d(int(1, Some(262_144)), Hot),
        "vcpus" => d(int(1, None), Feature("cpu")),
        "memory" => d(Kind::Memory, Feature("memory")),
        "balloon" => d(int(0, None), Balloon),
        "hotplug" => d(Kind::Hotplug, HotplugOpt),
        "tablet" => d(Kind::Bool, Feature("usb")),
        // Only at the next start.
        "cores" | "sockets" | "smp" => d(int(1, None), Pending),
        "numa" | "acpi" | "kvm" | "localtime" | "freeze" | "reboot" | "template" | "autostart"
        | "keephugepages" => d(Kind::Bool, Pending),
        "ostype" => d(Kind::Enum(OSTYPES), Pending),
        "scsihw" => d(Kind::Enum(SCSIHW), Pending),
        "bios" => d(Kind::Enum(&["seabios", "ovmf"]), Pending),
        "hugepages" => d(Kind::Enum(&["any", "2", "1024"]), Pending),
        "tdf" => d(Kind::Bool, Pending),
        "agent"
        | "args"
        | "affinity"
        | "boot"
        | "bootdisk"
        | "cpu"
        | "machine"
        | "vga"
        | "watchdog"
        | "smbios1"
        | "vmgenid"
        | "keyboard"
        | "startdate"
        | "efidisk0"
        | "tpmstate0"
        | "rng0"
        | "audio0"
        | "ivshmem"
        | "spice_enhancements"
        | "meta"
        | "arch"
        | "vmstate"
        | "runningmachine"
        | "runningcpu"
        | "running-nets-host-mtu"
        | "cdrom"
        | "allow-ksm"
        | "amd-sev"
        | "intel-tdx" => d(ANY, Pending),
        _ => indexed_key(name),
    }
}

/// `netN`, disks, `usbN`, `unusedN` and the other numbered keys.
fn indexed_key(name: &str) -> Option<KeyDesc> {
    let split = name.find(|c: char| c.is_ascii_digit())?;
    let (prefix, num) = name.split_at(split);
    if num.len() > 1 && num.starts_with('0') {
        return None;
    }
    let n: u32 = num.parse().ok()?;
    let plug = match prefix {
        "net" if n < 32 => Plug::Feature("network"),
        "scsi" if n < 31 => Plug::Feature("disk"),
        "virtio" if n < 16 => Plug::Feature("disk"),
        "sata" if n < 6 => Plug::Pending,
        "ide" if n < 4 => Plug::Pending,
        "usb" if n < 14 => Plug::Feature("usb"),
        "unused" if n < 256 => Plug::Hot,
        "ipconfig" if n < 32 => Plug::Fast,
        "hostpci" | "serial" | "parallel" | "numa" | "virtiofs" if n < 16 => Plug::Pending,
        _ => return None,
    };
    Some(KeyDesc { kind: ANY, plug })
}

/// A config value as PVE's `check_type` types it in JSON: integers and booleans become
/// numbers, everything else (including `number`s like `cpulimit`, and a VM's `memory`
/// property string) stays a string.
pub(crate) fn json_value(kind: SimKind, name: &str, text: &str) -> serde_json::Value {
    match key(kind, name).map(|d| d.kind) {
        Some(Kind::Int { .. }) => match text.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => text.into(),
        },
        Some(Kind::Bool) => match text.to_ascii_lowercase().as_str() {
            "1" | "on" | "yes" | "true" => 1.into(),
            "0" | "off" | "no" | "false" => 0.into(),
            _ => text.into(),
        },
        _ => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_keys() {
        let plug = |k: &str| qemu_key(k).unwrap().plug;
        assert_eq!(plug("cores"), Plug::Pending);
        assert_eq!(plug("sockets"), Plug::Pending);
        assert_eq!(plug("description"), Plug::Fast);
        assert_eq!(plug("onboot"), Plug::Fast);
        assert_eq!(plug("tags"), Plug::Fast);
        assert_eq!(plug("memory"), Plug::Feature("memory"));
        assert_eq!(plug("vcpus"), Plug::Feature("cpu"));
        assert_eq!(plug("balloon"), Plug::Balloon);
        assert_eq!(plug("net3"), Plug::Feature("network"));
        assert_eq!(plug("ipconfig0"), Plug::Fast);
        assert!(qemu_key("swap").is_none(), "a container key");
        assert!(qemu_key("hostname").is_none());
        assert!(qemu_key("net32").is_none());
        assert!(key(SimKind::Lxc, "swap").is_some());
        assert!(key(SimKind::Lxc, "sockets").is_none());
        assert_eq!(
            qemu_key("lock").unwrap().kind,
            Kind::Enum(LOCKS),
            "suspended and suspending are VM locks"
        );
    }

    #[test]
    fn json_types() {
        let lxc = SimKind::Lxc;
        assert_eq!(json_value(lxc, "cores", "2"), serde_json::json!(2));
        assert_eq!(json_value(lxc, "onboot", "1"), serde_json::json!(1));
        assert_eq!(json_value(lxc, "cpulimit", "0.5"), serde_json::json!("0.5"));
        assert_eq!(
            json_value(lxc, "ostype", "debian"),
            serde_json::json!("debian")
        );
        assert_eq!(json_value(lxc, "memory", "512"), serde_json::json!(512));
        let vm = SimKind::Qemu;
        assert_eq!(json_value(vm, "memory", "512"), serde_json::json!("512"));
        assert_eq!(json_value(vm, "sockets", "2"), serde_json::json!(2));
        assert_eq!(json_value(vm, "balloon", "0"), serde_json::json!(0));
        assert_eq!(json_value(vm, "numa", "1"), serde_json::json!(1));
        assert_eq!(json_value(vm, "agent", "1"), serde_json::json!("1"));
    }
}
