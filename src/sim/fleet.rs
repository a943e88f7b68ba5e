//! Varied fleets of guests for `felhom-agent sim --guests N --vms M` and for tests:
//! containers, and VMs in every state the agent must tell apart.

use super::model::{PowerState, QmpState, SimGuest};

const NAMES: &[&str] = &[
    "web", "db", "cache", "mail", "dns", "proxy", "build", "git", "mon", "backup",
];

/// `n` guests on `node` with vmids from 100: two of three running, cores 1 to 4 (every
/// fifth without `cores`), memory 512 to 4096 MiB, swap 0 or 512, some with tags,
/// descriptions and `onboot`; one locked by a backup and one template (for n >= 2).
pub fn fleet(n: usize, node: &str) -> Vec<SimGuest> {
    let (locked, template) = match n {
        0 | 1 => (None, None),
        2..=4 => (Some(n - 2), Some(n - 1)),
        _ => (Some(3), Some(4)),
    };
    (0..n)
        .map(|i| {
            let vmid = 100 + i as u32;
            let mut g = SimGuest::new(vmid, node);
            let name = NAMES[i % NAMES.len()];
            g.hostname = Some(format!("{name}{}", i / NAMES.len() + 1));
            g.status = if i % 3 == 2 {
                PowerState::Stopped
            } else {
                PowerState::Running
            };
            g.cores = (i % 5 != 4).then_some(1 + (i % 4) as u32);
            g.memory = Some([512, 1024, 2048, 4096][i % 4]);
            g.swap = Some([512, 0][i % 2]);
            g.onboot = (i % 2 == 0).then_some(true);
            if i % 3 == 0 {
                g.tags = Some(format!("{name};prod"));
            }
            if i % 4 == 1 {
                g.description = Some(format!("{name} server\nmanaged by felhom\n"));
            }
            for (k, v) in [
                ("arch", "amd64".to_string()),
                ("ostype", "debian".to_string()),
                ("unprivileged", "1".to_string()),
                ("rootfs", format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
                (
                    "net0",
                    format!(
                        "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:{:02X}:{:02X},ip=dhcp,type=veth",
                        vmid >> 8 & 0xff,
                        vmid & 0xff
                    ),
                ),
            ] {
                g.other.insert(k.to_string(), v);
            }
            if Some(i) == locked {
                g.lock = Some("backup".to_string());
            }
            if Some(i) == template {
                g.template = true;
                g.status = PowerState::Stopped;
            }
            g
        })
        .collect()
}

/// `n` VMs on `node` with vmids from `first`, cycling through ten states: running with
/// the guest agent, stopped with `onboot`, running with `cores` pending (a restart
/// needed), paused, a backup of a stopped VM (`prelaunch`, `lock: backup`), hibernated,
/// running but deaf to ACPI, a template, HA-managed and running, and running in
/// `io-error`.
pub fn vm_fleet(n: usize, node: &str, first: u32) -> Vec<SimGuest> {
    (0..n)
        .map(|i| {
            let vmid = first + i as u32;
            let name = format!("vm-{}{}", NAMES[i % NAMES.len()], i / NAMES.len() + 1);
            let g = SimGuest::vm(vmid, node)
                .with_config("name", &name)
                .with_config("cores", &(1 + i % 4).to_string())
                .with_config("memory", ["2048", "4096", "1024", "8192"][i % 4]);
            match i % 10 {
                0 => {
                    let mut g = g
                        .running()
                        .with_config("agent", "1")
                        .with_config("tags", "prod");
                    g.guest_agent = true;
                    g
                }
                1 => g.with_config("onboot", "1"),
                2 => g.running().with_pending("cores", "4"),
                3 => g.paused(),
                4 => g.backup_of_stopped(),
                5 => g.hibernated(),
                6 => {
                    let mut g = g.running().with_config("description", "no acpid inside");
                    g.ignores_acpi = true;
                    g
                }
                7 => g.with_config("template", "1"),
                8 => g.running().ha("started"),
                _ => g.with_qmp(QmpState::IoError),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_fleet_covers_the_states() {
        let f = vm_fleet(10, "pve1", 200);
        assert_eq!((f[0].vmid, f[9].vmid), (200, 209));
        assert!(f.iter().all(SimGuest::is_vm));
        let qmp: Vec<QmpState> = f
            .iter()
            .filter(|g| g.status == PowerState::Running)
            .map(|g| g.qmp)
            .collect();
        for s in [
            QmpState::Running,
            QmpState::Paused,
            QmpState::Prelaunch,
            QmpState::IoError,
        ] {
            assert!(qmp.contains(&s), "{s:?}");
        }
        assert!(f[2].pending.contains_key("cores"));
        assert_eq!(f[5].lock.as_deref(), Some("suspended"));
        assert!(f[7].template && f[8].ha.is_some());
        assert_eq!(vm_fleet(12, "pve1", 100)[11].vmid, 111);
    }

    #[test]
    fn fleet_is_varied() {
        let f = fleet(20, "pve1");
        assert_eq!(f.len(), 20);
        assert_eq!(f[0].vmid, 100);
        assert_eq!(f[19].vmid, 119);
        assert_eq!(f.iter().filter(|g| g.lock.is_some()).count(), 1);
        assert_eq!(f.iter().filter(|g| g.template).count(), 1);
        assert!(f.iter().any(|g| g.status == PowerState::Running));
        assert!(f.iter().any(|g| g.status == PowerState::Stopped));
        assert!(f.iter().any(|g| g.cores.is_none()));
        assert!(f.iter().any(|g| g.tags.is_some()));
        assert!(f.iter().any(|g| g.description.is_some()));
        let two = fleet(2, "pve1");
        assert!(two[0].lock.is_some() && two[1].template);
        assert!(fleet(1, "pve1")[0].lock.is_none());
        assert!(fleet(0, "pve1").is_empty());
    }
}
