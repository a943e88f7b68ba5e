//! The Proxmox VE API: the only module that knows Proxmox URLs and JSON.

/// `Display`, `Serialize` and `Deserialize` for a word the API sends as a string, of a
/// type with `as_str` and an infallible `parse` (an unknown word is kept, not refused).
macro_rules! wire_word {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(<$t>::parse(&String::deserialize(d)?))
            }
        }
    };
}

pub mod client;
mod envelope;
pub mod error;
pub mod form;
pub mod kind;
pub mod messages;
pub mod perl;
pub mod qemu;
mod request;
mod resources;
mod retry;
mod times;
pub mod tls;
pub(crate) mod transport;
pub mod types;
mod upid;
pub mod url;
mod vmid;
mod wait;

pub use client::{Client, ClientOptions, Retry, WaitOptions, MAX_BODY_BYTES};
pub use error::{ApiError, TransportError, WaitError};
pub use kind::GuestKind;
pub use messages::TaskFailure;
pub use qemu::{Hotplug, QmpStatus, VmConfig, VmEntry, VmPower, VmStatus};
pub use times::{Expected, TaskTimes};
pub use tls::{default_ca_file, trust_ca_file, DEFAULT_CA_FILE};
pub use types::{
    ClusterResource, GuestEntry, GuestStatus, LxcConfig, PendingEntry, PowerOp, PowerState,
    StatusNow, TaskListEntry, TaskOutcome, TaskQuery, TaskRunState, TaskStatus, Version,
};
pub use upid::{is_node_name, percent_encode_segment, Upid, UpidParseError};
pub use url::{BaseUrl, UrlError};
pub use vmid::Vmid;
