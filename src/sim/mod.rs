//! A simulated Proxmox VE node: a real HTTP/1.1 (optionally TLS) server that answers the
//! `/api2/json` calls the agent makes the way a node does, for containers and QEMU
//! virtual machines. The behaviour follows Proxmox's own code, cited in each module:
//! pve-http-server (`src/PVE/APIServer/`), pve-container (`src/PVE/API2/LXC*.pm`,
//! `src/PVE/LXC/Config.pm`), qemu-server (`src/PVE/API2/Qemu.pm`,
//! `src/PVE/QemuServer.pm`), pve-manager (`PVE/API2/Tasks.pm`, `PVE/API2/Cluster.pm`)
//! and pve-common (`src/PVE/UPID.pm`, `src/PVE/JSONSchema.pm`).
//!
//! It is the stand-in every integration test trusts, and `felhom-agent sim` runs it by
//! hand. Only this module serves HTTP. It borrows nothing from the code it tests: no
//! `crate::pve` here, its UPIDs included.
//!
//! Layers, each importing only the ones below it; no module imports one that imports it
//! back:
//! - the bottom, plain types and pure helpers: `model` (options, guests, the request
//!   record), `faults` (the fault rules), `http` (requests and responses by hand),
//!   `upid`, `schema` (the LXC config keys and PVE's value checks), `digest`; then
//!   `keys` (the VM config keys, lookups by kind), `reply` (handler results and the PVE
//!   envelope), `conf` (a guest's config as text), `seed` (builders for seeding guests),
//!   `vmupdate` (a VM's config update on a guest value), `persist` (the state file),
//!   `tls`, `fleet`.
//! - `state`: everything behind one `Mutex` and the `Condvar` notified on every change,
//!   the task types included; `usage` (usage figures of a guest) and `vmrun` (what a VM
//!   task does when it ends) work on it.
//! - handlers: `read` (GET endpoints), `vmread` (the VM list and status), `config` (a
//!   container's PUT config), `vmconfig` (a VM's PUT and POST config), `power` and
//!   `vmpower` (start, stop, shutdown), `tasks` (task lifecycle and endpoints), and the
//!   `clock` thread (`sim clock`), which finishes tasks and applies HA requests when they
//!   fall due.
//! - `routes`: matches a call, checks its parameter schema, dispatches to a handler.
//! - `router`: logs each request and decides its faults on arrival, authenticates, runs
//!   the route and shapes the answer; `inject` turns a fault into what is sent.
//! - `server`: one accept thread (`sim accept`) and a thread per connection (`sim conn N`),
//!   serving a `Handler`: the router, or `source`, a desired-state source beside the node
//!   (its own listener, certificate and request log) for the tests of `desired_url`.
//! - `handle`: the [`Sim`] test handle; `audit` checks the agent's promise from the
//!   node's records; `cli` is `felhom-agent sim`.
//!
//! Faults keep "never carried out" (a reset, a status before execution) apart from
//! "carried out, answer lost or spoiled" (596 and proxy statuses after execution,
//! truncated, garbled or huge bodies): a client must treat them differently. Each
//! [`Effect`] says which it is.

mod audit;
pub mod cli;
mod clock;
mod conf;
mod config;
mod digest;
mod faults;
mod fleet;
mod handle;
mod http;
mod inject;
mod keys;
mod model;
mod persist;
mod power;
mod read;
mod reply;
mod router;
mod routes;
mod schema;
mod seed;
mod server;
mod source;
mod state;
mod tasks;
mod tls;
mod upid;
mod usage;
mod vmconfig;
mod vmpower;
mod vmread;
mod vmrun;
mod vmupdate;

pub use audit::{Audit, InFlight, Violation};
pub use faults::{Effect, FaultRule, Faults, Garble, Match};
pub use fleet::{fleet, vm_fleet};
pub use handle::Sim;
pub use model::{
    BulkTask, ErrorStyle, PowerState, QmpState, RequestRecord, SimGuest, SimKind, SimOptions,
    TlsFiles,
};
pub use source::{Serve, Source, SourceOptions, SourceRecord};
