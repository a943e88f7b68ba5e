//! [`Node`] answered by the real Proxmox client.

use super::{Node, TaskState};
use crate::pve::types::{TaskQuery, TaskRunState};
use crate::pve::{ApiError, Client, Upid, Vmid};

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

    fn tasks_since(&self, vmid: Vmid, task_type: &str, since: i64) -> Result<Vec<Upid>, ApiError> {
        let q = TaskQuery {
            vmid: Some(vmid),
            typefilter: Some(task_type.to_string()),
            since: Some(since),
            // The default source is the archive only: running tasks need `all`.
            source: Some("all".into()),
            limit: Some(100),
        };
        let id = vmid.to_string();
        Ok(self
            .client
            .tasks(self.node, &q)?
            .into_iter()
            .filter(|t| t.kind == task_type && t.starttime >= since && t.id == id)
            .map(|t| t.upid)
            .collect())
    }

    fn config_digest(&self, vmid: Vmid) -> Result<String, ApiError> {
        Ok(self.client.lxc_config(self.node, vmid, false)?.digest)
    }
}
