//! Integration tests: the real client, engine and binary against the simulated node.
mod journal;
