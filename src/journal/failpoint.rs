//! The journal's failpoints, for the tests that crash a process or fail a sync at one
//! exact place, named here and switched on through [`crate::failpoint`].

/// The places a test can stop or break the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failpoint {
    /// `compact-before-rename`: compaction stops for good after fsyncing
    /// `journal.tmp` and before the rename, so a test can kill the process there.
    CompactBeforeRename,
    /// `open-before-rename`: the rewrite at open stops for good at the same place.
    OpenBeforeRename,
    /// `append-sync-fails`: every `fdatasync` after an append fails (the write
    /// itself happens), as a disk whose writeback failed would answer.
    AppendSyncFails,
}

impl Failpoint {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Failpoint::CompactBeforeRename => "compact-before-rename",
            Failpoint::OpenBeforeRename => "open-before-rename",
            Failpoint::AppendSyncFails => "append-sync-fails",
        }
    }

    /// Whether `FELHOM_FAILPOINT` names this failpoint (see [`crate::failpoint`]).
    pub(crate) fn is_on(self) -> bool {
        crate::failpoint::hit(self.name())
    }

    /// If this failpoint is on: says so on stderr (`failpoint <name> reached`, the
    /// line a test waits for) and blocks the calling thread for good, for the test
    /// to kill the process.
    pub(crate) fn stop_here(self) {
        crate::failpoint::stop_here(self.name());
    }
}
