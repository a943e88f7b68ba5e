//! Integration tests: the real client, engine and binary against the simulated node.

mod config;
mod desired;
mod metrics;
mod notify;
mod prom;
mod sim;
