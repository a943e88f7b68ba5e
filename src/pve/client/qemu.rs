//! The client's calls for QEMU virtual machines (docs/proxmox-api.md §9), and the calls
//! whose answer has the same shape for both kinds of guest, taking a [`GuestKind`].

use super::{Client, ConfigTask};
use crate::pve::error::ApiError;
use crate::pve::form::{encode_component, Params};
use crate::pve::kind::GuestKind;
use crate::pve::qemu::{RawVmStatus, VmConfig, VmEntry, VmStatus};
use crate::pve::types::{PendingEntry, PowerOp, StatusNow};
use crate::pve::{Upid, Vmid};
use minreq::Method;

impl Client {
    /// `GET /nodes/{node}/qemu`: the VMs whose config is on `node` (filtered to those the
    /// token may audit). Without `full` the node asks no VM's monitor, so the entries
    /// have no `qmpstatus` and a running entry's [`VmEntry::power`] is unknown. With
    /// `full` it queries every running VM's monitor within one budget of about 3 s; a VM
    /// whose monitor does not answer in time reads `qmpstatus` = `status`
    /// (docs/proxmox-api.md §9.1).
    pub fn list_qemu(&self, node: &str, full: bool) -> Result<Vec<VmEntry>, ApiError> {
        let query = if full {
            vec![("full", "1".to_string())]
        } else {
            Vec::new()
        };
        self.get(&format!("/nodes/{}/qemu", encode_component(node)), &query)
    }

    /// `GET .../qemu/{vmid}/status/current`: with `qmpstatus`, `ha` and `agent`, and
    /// the [`crate::pve::VmPower`] they mean. Costs one round of monitor queries.
    pub fn qemu_status(&self, node: &str, vmid: Vmid) -> Result<VmStatus, ApiError> {
        let path = format!("{}/status/current", guest_path(GuestKind::Qemu, node, vmid));
        let raw: RawVmStatus = self.get(&path, &[])?;
        Ok(raw.into_status(vmid))
    }

    /// `GET .../status/current` of a guest of either kind, in the terms both share.
    pub fn guest_status(
        &self,
        kind: GuestKind,
        node: &str,
        vmid: Vmid,
    ) -> Result<StatusNow, ApiError> {
        Ok(match kind {
            GuestKind::Lxc => self.lxc_status(node, vmid)?.into(),
            GuestKind::Qemu => self.qemu_status(node, vmid)?.into(),
        })
    }

    /// `GET .../qemu/{vmid}/config`: with `current` false pending values are merged in
    /// (the config as it will be); with `current` true only active values.
    pub fn qemu_config(&self, node: &str, vmid: Vmid, current: bool) -> Result<VmConfig, ApiError> {
        let query = if current {
            vec![("current", "1".to_string())]
        } else {
            Vec::new()
        };
        let path = format!("{}/config", guest_path(GuestKind::Qemu, node, vmid));
        self.get(&path, &query)
    }

    /// `GET .../qemu/{vmid}/pending`: [`Client::guest_pending`] for a VM.
    pub fn qemu_pending(&self, node: &str, vmid: Vmid) -> Result<Vec<PendingEntry>, ApiError> {
        self.guest_pending(GuestKind::Qemu, node, vmid)
    }

    /// `POST .../qemu/{vmid}/status/{start|stop|shutdown}`: [`Client::guest_power`] for
    /// a VM. A shutdown must carry `timeout`.
    pub fn qemu_power(
        &self,
        node: &str,
        vmid: Vmid,
        op: PowerOp,
        params: &Params,
    ) -> Result<Upid, ApiError> {
        self.guest_power(GuestKind::Qemu, node, vmid, op, params)
    }

    /// `PUT .../qemu/{vmid}/config`, form-encoded; `delete`, `revert` and `digest` are
    /// ordinary params. Synchronous: the change is made (or refused) within the request,
    /// so this is normally `Ok(None)`, and hotplug failures come back as a 400 naming
    /// the keys. pveproxy gives up on a request after 30 s of silence, so use
    /// [`Client::qemu_set_config_async`] when a live CPU or memory hotplug may run
    /// (docs/proxmox-api.md §9.4).
    pub fn qemu_set_config(
        &self,
        node: &str,
        vmid: Vmid,
        params: &Params,
    ) -> Result<Option<Upid>, ApiError> {
        let path = format!("{}/config", guest_path(GuestKind::Qemu, node, vmid));
        self.mutate(Method::Put, &path, params, None)
    }

    /// `POST .../qemu/{vmid}/config`: the same update run as a `qmconfig` task, normally
    /// `Ok(Some(upid))`. The digest, lock and balloon checks still fail the call itself;
    /// everything after (the config lock, hotplug errors) fails the task. With
    /// `background_delay` in `params` the node may answer `null` for a task that already
    /// ended well (`Ok(None)`), or 500 for one that failed.
    pub fn qemu_set_config_async(
        &self,
        node: &str,
        vmid: Vmid,
        params: &Params,
    ) -> Result<Option<Upid>, ApiError> {
        let path = format!("{}/config", guest_path(GuestKind::Qemu, node, vmid));
        let task = ConfigTask {
            node,
            vmid,
            kind: "qmconfig",
        };
        self.mutate(Method::Post, &path, params, Some(task))
    }

    /// `GET /nodes/{node}/{lxc|qemu}/{vmid}/pending`. The list includes an entry for
    /// the config key `digest`.
    pub fn guest_pending(
        &self,
        kind: GuestKind,
        node: &str,
        vmid: Vmid,
    ) -> Result<Vec<PendingEntry>, ApiError> {
        self.get(&format!("{}/pending", guest_path(kind, node, vmid)), &[])
    }
}

/// `/nodes/{node}/{lxc|qemu}/{vmid}`.
fn guest_path(kind: GuestKind, node: &str, vmid: Vmid) -> String {
    format!(
        "/nodes/{}/{}/{vmid}",
        encode_component(node),
        kind.path_segment()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let id = Vmid::new(100).unwrap();
        assert_eq!(
            guest_path(GuestKind::Qemu, "pve1", id),
            "/nodes/pve1/qemu/100"
        );
        assert_eq!(
            guest_path(GuestKind::Lxc, "a b", id),
            "/nodes/a%20b/lxc/100"
        );
    }
}
