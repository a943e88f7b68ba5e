//! Quarantine: a guest whose action made the agent panic is held until its desired state
//! changes, so that one guest that trips a bug cannot take the agent down again and
//! again, nor keep every other guest from being managed.
//!
//! The node binary is built with `panic = "abort"` (it saves a quarter of a megabyte of
//! unwinding tables): a panic ends the process, systemd starts it again, and recovery
//! resolves what was in flight from the journal. Before the process ends, the panic hook
//! installed here writes the guest the panicking thread was acting on, with the spec's
//! fingerprint and the panic's message, to `<state_dir>/quarantine.json` (atomically).
//! The restarted agent loads that file and holds the guest; a change of its desired
//! spec, or removing the file, lifts it. Builds that unwind (tests, `cargo run`) record
//! the same and the lane reports the job as failed, so both behave alike from the next
//! pass on.

use crate::pve::Vmid;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The file in the state directory.
pub fn file_in(state_dir: &Path) -> PathBuf {
    state_dir.join("quarantine.json")
}

/// Why a guest is quarantined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The fingerprint of the desired spec it was acting on: a different spec lifts it.
    pub fingerprint: u64,
    pub panic: String,
    /// When, RFC 3339.
    pub at: String,
}

/// The guests in quarantine, shared by the engine and the panic hook.
#[derive(Clone, Debug, Default)]
pub struct Quarantine {
    inner: Arc<Mutex<BTreeMap<Vmid, Entry>>>,
    file: Option<PathBuf>,
}

thread_local! {
    /// The guest this thread is acting on, with its spec's fingerprint.
    static ACTING_ON: Cell<Option<(Vmid, u64)>> = const { Cell::new(None) };
}

/// Marks the current thread as acting on a guest until dropped.
pub struct Acting(());

impl Drop for Acting {
    fn drop(&mut self) {
        ACTING_ON.with(|a| a.set(None));
    }
}

/// While the returned guard lives, a panic on this thread quarantines `vmid`.
pub fn acting_on(vmid: Vmid, fingerprint: u64) -> Acting {
    ACTING_ON.with(|a| a.set(Some((vmid, fingerprint))));
    Acting(())
}

/// The quarantine the panic hook writes to; set once per process.
static HOOKED: OnceLock<Quarantine> = OnceLock::new();

impl Quarantine {
    /// Loads `<state_dir>/quarantine.json` (a missing or unreadable file is an empty
    /// quarantine) and installs the panic hook that adds to it. Once per process; a
    /// second call returns the first one's quarantine.
    pub fn open(state_dir: &Path) -> Quarantine {
        HOOKED
            .get_or_init(|| {
                let q = Quarantine {
                    file: Some(file_in(state_dir)),
                    ..Quarantine::read(state_dir)
                };
                let previous = std::panic::take_hook();
                let hooked = q.clone();
                std::panic::set_hook(Box::new(move |info| {
                    if let Some((vmid, fingerprint)) = ACTING_ON.with(Cell::get) {
                        let panic = info.to_string();
                        hooked.add(vmid, fingerprint, panic);
                    }
                    previous(info);
                }));
                q
            })
            .clone()
    }

    /// The quarantine as `<state_dir>/quarantine.json` holds it, read-only: no hook, and
    /// lifting an entry does not write the file (for `plan`, beside the service).
    pub fn read(state_dir: &Path) -> Quarantine {
        let entries = std::fs::read(file_in(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Quarantine {
            inner: Arc::new(Mutex::new(entries)),
            file: None,
        }
    }

    /// A quarantine that no panic hook writes to and no file keeps (tests).
    pub fn in_memory() -> Quarantine {
        Quarantine::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vmid, Entry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Quarantines `vmid` and writes the file.
    pub fn add(&self, vmid: Vmid, fingerprint: u64, panic: String) {
        let mut entries = self.lock();
        entries.insert(
            vmid,
            Entry {
                fingerprint,
                panic,
                at: crate::time::now_rfc3339(),
            },
        );
        self.save(&entries);
    }

    fn save(&self, entries: &BTreeMap<Vmid, Entry>) {
        if let Some(file) = &self.file {
            let text = serde_json::to_string(entries).expect("plain data serializes");
            if let Err(e) = crate::fsutil::write_atomic(file, text) {
                crate::log::error(
                    "cannot write the quarantine file",
                    &[("file", &file.display()), ("error", &e)],
                );
            }
        }
    }

    /// The guests held now, given each one's current desired fingerprint; entries whose
    /// spec changed (or whose guest left the desired state) are lifted and forgotten.
    pub fn holds(&self, fingerprints: &BTreeMap<Vmid, u64>) -> BTreeMap<Vmid, Entry> {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|v, e| fingerprints.get(v) == Some(&e.fingerprint));
        if entries.len() != before {
            self.save(&entries);
        }
        entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_spec_lifts_the_quarantine() {
        let q = Quarantine::in_memory();
        let v = Vmid::new(101).unwrap();
        q.add(v, 7, "boom".into());
        assert_eq!(q.holds(&BTreeMap::from([(v, 7)])).len(), 1);
        assert!(q.holds(&BTreeMap::from([(v, 8)])).is_empty());
        assert!(q.holds(&BTreeMap::from([(v, 7)])).is_empty(), "forgotten");
    }
}
