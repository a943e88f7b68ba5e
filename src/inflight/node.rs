//! [`Node`] answered by the real Proxmox client.

use super::{GuestNow, Node, TaskState};
use crate::pve::types::{TaskQuery, TaskRunState};
use crate::pve::{ApiError, Client, GuestKind, Upid, Vmid};

/// The client plus the node whose tasks and guests are asked about.
pub struct ClientNode<'a> {
    pub client: &'a Client,
    pub node: &'a str,
}

impl Node for ClientNode<'_> {
    fn task_state(&self, upid: &Upid) -> Result<TaskState, ApiError> {
        let s = self.client.task_status(upid)?;
        Ok(match s.status {
            TaskRunState::Running => TaskState::Running,
            TaskRunState::Stopped => TaskState::Finished {
                ok: s.outcome().is_some_and(|o| o.is_success()),
                exitstatus: s
                    .exitstatus
                    .clone()
                    .unwrap_or_else(|| "unexpected status".into()),
            },
        })
    }

    fn tasks_since(&self, vmid: Vmid, types: &[&str], since: i64) -> Result<Vec<Upid>, ApiError> {
        // One request for every type: the guest's tasks since then, filtered here.
        let q = TaskQuery {
            vmid: Some(vmid),
            typefilter: None,
            since: Some(since),
            // The default source is the archive only: running tasks need `all`.
            source: Some("all".into()),
            limit: Some(500),
        };
        let id = vmid.to_string();
        Ok(self
            .client
            .tasks(self.node, &q)?
            .into_iter()
            .filter(|t| types.contains(&t.kind.as_str()) && t.starttime >= since && t.id == id)
            .map(|t| t.upid)
            .collect())
    }

    fn config_digest(&self, vmid: Vmid) -> Result<String, ApiError> {
        match self.client.lxc_config(self.node, vmid, false) {
            Ok(c) => Ok(c.digest),
            // Not a container here: a VM, then.
            Err(e) if e.is_config_missing() => {
                Ok(self.client.qemu_config(self.node, vmid, false)?.digest)
            }
            Err(e) => Err(e),
        }
    }

    fn guest_now(&self, vmid: Vmid) -> Result<Option<GuestNow>, ApiError> {
        let read = |kind| self.client.guest_status(kind, self.node, vmid);
        match read(GuestKind::Lxc) {
            Ok(s) => Ok(Some(s.into())),
            // Not a container here: a VM, then, or not on this node at all.
            Err(e) if e.is_config_missing() => match read(GuestKind::Qemu) {
                Ok(s) => Ok(Some(s.into())),
                Err(e) if e.is_config_missing() => Ok(None),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}
