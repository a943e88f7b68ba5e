//! felhom-agent keeps a Proxmox VE node's guests converged to a declared desired state.
//!
//! ARCHITECTURE.md maps this crate: its modules, threads, invariants and boundaries.

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
pub mod manual;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod pve;
pub mod quarantine;
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
