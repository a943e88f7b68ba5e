//! felhom-agent keeps a Proxmox VE node's guests converged to a declared desired state.
//!
//! See the architecture section of README.md for the map of this crate.

pub mod action;
pub mod agent;
pub mod app;
pub mod cancel;
pub mod config;
pub mod daemon;
#[cfg(feature = "sim")]
pub mod demo;
pub mod desired;
pub mod engine;
pub mod exit;
pub mod failpoint;
pub mod fsutil;
pub mod inflight;
pub mod journal;
pub mod json;
pub mod lanes;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod pve;
pub mod remote;
pub mod rng;
pub mod secret;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod trust;

#[cfg(test)]
mod fuzz;
