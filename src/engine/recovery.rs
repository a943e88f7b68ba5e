//! The journal's recovery talks to Proxmox through [`TaskLookup`]; this is that seam
//! implemented with the real client.

use crate::journal::{TaskLookup, TaskState};
use crate::pve::client::Client;
use crate::pve::types::{TaskQuery, TaskRunState};
use crate::pve::{Upid, Vmid};

/// The client plus the node whose task list is searched.
pub struct ClientTasks<'a> {
    pub client: &'a Client,
    pub node: &'a str,
}

impl TaskLookup for ClientTasks<'_> {
    fn task_state(&self, upid: &Upid) -> Result<TaskState, String> {
        let s = self.client.task_status(upid).map_err(|e| e.to_string())?;
        Ok(match s.status {
            TaskRunState::Running => TaskState::Running,
            TaskRunState::Stopped => {
                let exitstatus = s
                    .exitstatus
                    .clone()
                    .unwrap_or_else(|| "unexpected status".into());
                TaskState::Finished {
                    ok: s.outcome().is_some_and(|o| o.is_success()),
                    exitstatus,
                }
            }
        })
    }

    fn find_task(&self, vmid: Vmid, task_type: &str, since: i64) -> Result<Option<Upid>, String> {
        let q = TaskQuery {
            vmid: Some(vmid),
            typefilter: Some(task_type.to_string()),
            since: Some(since),
            source: Some("all".into()),
            limit: Some(50),
        };
        let tasks = self
            .client
            .tasks(self.node, &q)
            .map_err(|e| e.to_string())?;
        Ok(tasks
            .into_iter()
            .filter(|t| t.kind == task_type && t.starttime >= since && t.id == vmid.to_string())
            .min_by_key(|t| t.starttime)
            .map(|t| t.upid))
    }
}
