//! Which kind of guest a call is about: a container (pve-container, under `/lxc/`) or a
//! QEMU virtual machine (qemu-server, under `/qemu/`), with the worker task type each
//! action on it starts (docs/proxmox-api.md §5.1, §9.5), so that code above the client
//! can treat both kinds alike.

use super::types::PowerOp;
use super::Vmid;
use std::fmt;

/// A container or a virtual machine. Serializes as `lxc` or `qemu`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Lxc,
    Qemu,
}

impl GuestKind {
    /// Both kinds.
    pub const ALL: [GuestKind; 2] = [GuestKind::Lxc, GuestKind::Qemu];

    /// The segment under `/nodes/{node}/`: `lxc` or `qemu`. It is also the `type` of a
    /// guest in `/cluster/resources`.
    pub fn path_segment(self) -> &'static str {
        match self {
            GuestKind::Lxc => "lxc",
            GuestKind::Qemu => "qemu",
        }
    }

    /// `lxc` or `qemu`, as [`GuestKind::path_segment`].
    pub fn as_str(self) -> &'static str {
        self.path_segment()
    }

    /// From `lxc` or `qemu` (a path segment or a cluster resource's `type`).
    pub fn parse(s: &str) -> Option<GuestKind> {
        match s {
            "lxc" => Some(GuestKind::Lxc),
            "qemu" => Some(GuestKind::Qemu),
            _ => None,
        }
    }

    /// How Proxmox names a guest of this kind in its messages: `CT` (`CT 101 not
    /// running`) or `VM` (`VM is locked (backup)`).
    pub fn label(self) -> &'static str {
        match self {
            GuestKind::Lxc => "CT",
            GuestKind::Qemu => "VM",
        }
    }

    /// The worker type of the task a power call starts on a guest the HA stack does not
    /// manage: `vzstart`, `vzshutdown`, `vzstop`; `qmstart`, `qmshutdown`, `qmstop`.
    pub fn power_task(self, op: PowerOp) -> &'static str {
        match (self, op) {
            (GuestKind::Lxc, PowerOp::Start) => "vzstart",
            (GuestKind::Lxc, PowerOp::Shutdown) => "vzshutdown",
            (GuestKind::Lxc, PowerOp::Stop) => "vzstop",
            (GuestKind::Qemu, PowerOp::Start) => "qmstart",
            (GuestKind::Qemu, PowerOp::Shutdown) => "qmshutdown",
            (GuestKind::Qemu, PowerOp::Stop) => "qmstop",
        }
    }

    /// The worker type of the task a power call starts on an HA-managed guest, for both
    /// kinds: `hastart`, or `hastop` for shutdown and stop.
    pub fn ha_task(op: PowerOp) -> &'static str {
        match op {
            PowerOp::Start => "hastart",
            PowerOp::Shutdown | PowerOp::Stop => "hastop",
        }
    }

    /// The task types a power call of `op` can start: the direct one, then the HA one.
    pub fn task_types(self, op: PowerOp) -> [&'static str; 2] {
        [self.power_task(op), GuestKind::ha_task(op)]
    }

    /// The worker type of an asynchronous config update: none for containers (their
    /// config PUT is synchronous), `qmconfig` for the `POST .../qemu/{vmid}/config` of a
    /// VM (its PUT is synchronous and starts no task).
    pub fn config_task(self) -> Option<&'static str> {
        match self {
            GuestKind::Lxc => None,
            GuestKind::Qemu => Some("qmconfig"),
        }
    }

    /// The kind whose own tasks include `task_type` (`vzstart`, `qmconfig`, ...); `None`
    /// for types both kinds share (`hastart`, `hastop`) and for any other task.
    pub fn of_task_type(task_type: &str) -> Option<GuestKind> {
        GuestKind::ALL.into_iter().find(|k| {
            [PowerOp::Start, PowerOp::Shutdown, PowerOp::Stop]
                .iter()
                .any(|op| k.power_task(*op) == task_type)
                || k.config_task() == Some(task_type)
        })
    }

    /// The HA resource id of guest `vmid`: `ct:101` or `vm:100`.
    pub fn ha_sid(self, vmid: Vmid) -> String {
        match self {
            GuestKind::Lxc => format!("ct:{vmid}"),
            GuestKind::Qemu => format!("vm:{vmid}"),
        }
    }
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_task_types() {
        assert_eq!(GuestKind::parse("qemu"), Some(GuestKind::Qemu));
        assert_eq!(GuestKind::parse("lxc"), Some(GuestKind::Lxc));
        assert_eq!(GuestKind::parse("node"), None);
        assert_eq!(GuestKind::Qemu.to_string(), "qemu");
        assert_eq!(GuestKind::Lxc.label(), "CT");
        assert_eq!(GuestKind::Qemu.label(), "VM");
        assert_eq!(
            GuestKind::Qemu.task_types(PowerOp::Shutdown),
            ["qmshutdown", "hastop"]
        );
        assert_eq!(
            GuestKind::Lxc.task_types(PowerOp::Start),
            ["vzstart", "hastart"]
        );
        assert_eq!(GuestKind::Qemu.power_task(PowerOp::Stop), "qmstop");
        assert_eq!(GuestKind::Lxc.config_task(), None);
        assert_eq!(GuestKind::Qemu.config_task(), Some("qmconfig"));
        for (t, k) in [
            ("vzstart", Some(GuestKind::Lxc)),
            ("vzshutdown", Some(GuestKind::Lxc)),
            ("qmstop", Some(GuestKind::Qemu)),
            ("qmconfig", Some(GuestKind::Qemu)),
            ("hastart", None),
            ("vzdump", None),
        ] {
            assert_eq!(GuestKind::of_task_type(t), k, "{t}");
        }
        let id = Vmid::new(100).unwrap();
        assert_eq!(GuestKind::Qemu.ha_sid(id), "vm:100");
        assert_eq!(GuestKind::Lxc.ha_sid(id), "ct:100");
    }
}
