//! A guest's usage figures, made up but shaped as PVE reports them (zero when stopped),
//! for the guest lists, `status/current` and `/cluster/resources`.
//!
//! Imports `conf`, `model` and `state`.

use super::conf;
use super::model::SimKind;
use super::state::GuestRec;
use serde_json::{Map, Value};

pub(crate) const MIB: u64 = 1024 * 1024;

/// Parses a PVE disk size (`8G`, `512M`, `1.5T`, plain bytes).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}

/// Usage figures of a guest: made up, but zero when stopped, as PVE reports them.
pub(crate) struct Usage {
    pub maxmem: u64,
    pub maxswap: u64,
    pub maxdisk: u64,
    pub uptime: u64,
    pub running: bool,
}

pub(crate) fn usage(rec: &GuestRec) -> Usage {
    let g = &rec.g;
    let disk = match g.kind {
        SimKind::Lxc => g.other.get("rootfs").cloned(),
        SimKind::Qemu => boot_disk(g),
    };
    let maxdisk = disk
        .as_deref()
        .and_then(|r| r.split(',').find_map(|p| p.strip_prefix("size=")))
        .and_then(parse_size)
        .unwrap_or(4 << 30);
    Usage {
        maxmem: g.memory.unwrap_or(512) * MIB,
        maxswap: g.swap.unwrap_or(0) * MIB,
        maxdisk,
        uptime: rec.running_since.map_or(0, |t| t.elapsed().as_secs()),
        running: rec.running(),
    }
}

/// A VM's boot disk: the first disk of `boot`'s `order=`, else the first of `scsi0`,
/// `virtio0`, `sata0`, `ide0` that is set (qemu-server `Drive.pm` `bootdisk_size`).
fn boot_disk(g: &super::model::SimGuest) -> Option<String> {
    let order = conf::get(g, "boot")
        .and_then(|b| {
            b.split(',')
                .find_map(|p| p.strip_prefix("order=").map(str::to_string))
        })
        .unwrap_or_else(|| "scsi0;virtio0;sata0;ide0".to_string());
    order
        .split(';')
        .filter_map(|d| conf::get(g, d))
        .find(|v| v.contains("size="))
}

/// The list's `name`: a container's hostname without whitespace or `CT<vmid>`; a VM's
/// `name` or `VM <vmid>`.
pub(crate) fn name(rec: &GuestRec) -> String {
    match rec.g.kind {
        SimKind::Lxc => match &rec.g.hostname {
            Some(h) => h.chars().filter(|c| !c.is_whitespace()).collect(),
            None => format!("CT{}", rec.g.vmid),
        },
        SimKind::Qemu => conf::get(&rec.g, "name").unwrap_or_else(|| format!("VM {}", rec.g.vmid)),
    }
}

/// A VM's `cpus`: `vcpus` when set, else sockets × cores (each 1 when unset) capped at
/// the host's CPU count (qemu-server `QemuServer.pm` `vmstatus`).
pub(crate) fn vm_cpus(g: &super::model::SimGuest, host_cpus: u32) -> u64 {
    let num = |k: &str| {
        conf::get(g, k)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
    };
    if let Some(v) = num("vcpus") {
        return v;
    }
    let n = num("sockets").unwrap_or(1) * num("cores").unwrap_or(1);
    n.min(u64::from(host_cpus))
}

pub(crate) fn counters(m: &mut Map<String, Value>, u: &Usage) {
    let on = |v: u64| if u.running { v } else { 0 };
    m.insert("mem".into(), on(u.maxmem / 8).into());
    m.insert("disk".into(), on(u.maxdisk / 10).into());
    m.insert("uptime".into(), u.uptime.into());
    m.insert("cpu".into(), if u.running { 0.012 } else { 0.0 }.into());
    m.insert("netin".into(), on(u.uptime * 1500 + 1).into());
    m.insert("netout".into(), on(u.uptime * 700 + 1).into());
    m.insert("diskread".into(), on(u.uptime * 4096).into());
    m.insert("diskwrite".into(), on(u.uptime * 2048).into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1.5T"), Some(3 << 39));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
    }
}
