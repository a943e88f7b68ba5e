//! Seeding helpers for tests and the fleet: builder methods on [`SimGuest`] that put a
//! guest in the states the agent meets (a paused VM, a backup of a stopped VM, a
//! hibernated VM, pending changes, HA), each the way PVE would leave its config.
//!
//! Imports `conf` and `model`.

use super::conf;
use super::model::{PowerState, QmpState, SimGuest};

impl SimGuest {
    /// Running (for a VM: its QEMU process runs and its guest too).
    pub fn running(mut self) -> SimGuest {
        self.status = PowerState::Running;
        self.qmp = QmpState::Running;
        self
    }

    /// A VM whose QEMU process runs in QMP state `state`.
    pub fn with_qmp(mut self, state: QmpState) -> SimGuest {
        self.status = PowerState::Running;
        self.qmp = state;
        self
    }

    /// A VM paused by `status/suspend` (QMP `paused`).
    pub fn paused(self) -> SimGuest {
        self.with_qmp(QmpState::Paused)
    }

    /// A VM a backup job started while it was stopped: QEMU in `prelaunch` under
    /// `lock: backup`.
    pub fn backup_of_stopped(mut self) -> SimGuest {
        self.lock = Some("backup".into());
        self.with_qmp(QmpState::Prelaunch)
    }

    /// A VM hibernated with `status/suspend?todisk=1`: stopped, `lock: suspended`, its
    /// RAM in a `vmstate` volume, the machine and CPU it ran with recorded.
    pub fn hibernated(mut self) -> SimGuest {
        let vmid = self.vmid;
        self.status = PowerState::Stopped;
        self.lock = Some("suspended".into());
        for (k, v) in [
            (
                "vmstate",
                format!("local-lvm:vm-{vmid}-state-suspend-2025-01-01"),
            ),
            ("runningmachine", "pc-i440fx-9.2+pve1".to_string()),
            ("runningcpu", "qemu64,+aes,enforce".to_string()),
        ] {
            self.other.insert(k.to_string(), v);
        }
        self
    }

    /// Sets config key `key` to `value` as PVE would store it (`memory` keeps a
    /// `current=` form, a description is normalised, `sockets` goes to `other`).
    pub fn with_config(mut self, key: &str, value: &str) -> SimGuest {
        let stored = conf::stored_value(self.kind, key, value);
        let stored = (!(key == "description" && stored.is_empty())).then_some(stored);
        conf::set(&mut self, key, stored);
        self
    }

    /// A change waiting in the pending section: `key` is to become `value`.
    pub fn with_pending(mut self, key: &str, value: &str) -> SimGuest {
        let stored = conf::stored_value(self.kind, key, value);
        self.pending.insert(key.to_string(), stored);
        self
    }

    /// A pending deletion of `key`.
    pub fn with_pending_delete(mut self, key: &str) -> SimGuest {
        let mut deletes = conf::pending_deletes(&self);
        if !deletes.iter().any(|d| d == key) {
            deletes.push(key.to_string());
        }
        conf::set_pending_deletes(&mut self, &deletes);
        self
    }

    /// An HA resource whose requested state is `state` (`started`, `stopped`, `error`,
    /// `ignored`, ...).
    pub fn ha(mut self, state: &str) -> SimGuest {
        self.ha = Some(state.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_leave_the_config_as_pve_would() {
        let g = SimGuest::vm(100, "pve1")
            .paused()
            .with_pending("cores", "4")
            .with_config("memory", "current=4096")
            .with_config("agent", "1")
            .with_pending_delete("vcpus");
        assert_eq!((g.status, g.qmp), (PowerState::Running, QmpState::Paused));
        assert_eq!(g.pending["cores"], "4");
        assert_eq!(g.pending["delete"], "vcpus");
        assert_eq!(g.memory, Some(4096));
        assert_eq!(conf::get(&g, "memory").as_deref(), Some("current=4096"));
        assert_eq!(g.other["agent"], "1");
        let b = SimGuest::vm(101, "pve1").backup_of_stopped();
        assert_eq!(b.lock.as_deref(), Some("backup"));
        assert_eq!(b.qmp, QmpState::Prelaunch);
        let h = SimGuest::vm(102, "pve1").hibernated();
        assert_eq!(h.status, PowerState::Stopped);
        assert!(h.other.contains_key("vmstate"));
        let d = SimGuest::vm(103, "pve1").with_config("description", "hi \n\n");
        assert_eq!(d.description.as_deref(), Some("hi"));
    }
}
