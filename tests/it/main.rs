//! Integration tests: the real client, engine and binary against the simulated node.

mod agent;
mod client;
mod commands;
mod config;
mod contrib;
mod cost;
mod crash;
mod daemon;
mod deb;
mod desired;
mod engine;
mod export;
mod journal;
mod manual;
mod metrics;
mod never_twice;
mod notify;
mod prom;
mod rig;
mod sim;
mod soak;
