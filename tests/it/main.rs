//! Integration tests: the real client, engine and binary against the simulated node.

mod client;
mod config;
mod desired;
mod journal;
mod metrics;
mod notify;
mod prom;
mod sim;
mod commands;
mod engine;
mod rig;
