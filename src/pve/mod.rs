//! The Proxmox VE API: the only module that knows Proxmox URLs and JSON.

pub mod client;
pub mod error;
pub mod messages;
pub mod perl;
pub mod types;
mod upid;
mod vmid;

pub use error::{ApiError, TransportError, WaitError};
pub use messages::TaskFailure;
pub use upid::{percent_encode_segment, Upid, UpidParseError};
pub use vmid::Vmid;
