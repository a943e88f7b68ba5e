//! Integration tests: the real client, engine and binary against the simulated node.

mod agent;
mod client;
mod commands;
mod config;
mod contrib;
mod controls;
mod cost;
mod crash;
mod daemon;
mod deb;
mod desired;
mod engine;
mod export;
mod flaky;
mod journal;
mod manual;
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
