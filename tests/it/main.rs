//! Integration tests: the real client, engine and binary against the simulated node.

mod agent;
mod client;
mod cluster;
mod commands;
mod config;
mod controls;
mod cost;
mod crash;
mod daemon;
mod desired;
mod engine;
mod flaky;
mod journal;
mod metrics;
mod never_twice;
mod notify;
mod prom;
mod qemu;
mod rig;
mod secrets;
mod sim;
mod soak;
mod tidy;
