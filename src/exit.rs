//! Every exit code the binary can return, with its name.

/// Process exit codes. The numbers are a stable contract with supervisors:
/// `RestartPreventExitStatus=3` in the systemd unit relies on `JournalCorrupt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Clean exit; for `once`, everything converged or was skipped.
    Ok = 0,
    /// A runtime error; for `once`, an action failed.
    Failure = 1,
    /// Usage, config or desired-state error.
    Usage = 2,
    /// The journal is corrupt: a person must look before the agent runs again.
    JournalCorrupt = 3,
    /// The journal could not be made durable (fsync failed); the supervisor restarts
    /// the agent so that recovery runs on a fresh descriptor.
    JournalSync = 4,
    /// An internal thread ended when it must not have (a bug): the supervisor restarts
    /// the agent, and recovery runs.
    Internal = 5,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}
