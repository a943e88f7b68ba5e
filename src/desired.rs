//! Desired state (temporary stand-in on the engine branch; replaced by the config branch).

use crate::pve::Vmid;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    pub vmid: Vmid,
    pub name: Option<String>,
    pub state: Option<RunState>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub description: Option<String>,
    pub onboot: Option<bool>,
    pub tags: Option<Vec<String>>,
}

impl GuestSpec {
    pub fn fingerprint(&self) -> u64 {
        0
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub guests: BTreeMap<Vmid, GuestSpec>,
}
