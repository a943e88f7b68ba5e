//! Failpoints: named places where a test makes the real binary fail on purpose, set
//! with `FELHOM_FAILPOINT=<name>` (one name, or several separated by commas). Read once
//! per process; with the variable unset (as on every node), each check is one load.

use std::sync::OnceLock;

/// Whether the failpoint `name` is set for this process.
pub fn hit(name: &str) -> bool {
    static SET: OnceLock<Vec<String>> = OnceLock::new();
    SET.get_or_init(|| {
        std::env::var("FELHOM_FAILPOINT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    })
    .iter()
    .any(|s| s == name)
}

/// If the failpoint `name` is set: says so on stderr (`failpoint <name> reached`, the
/// line a test waits for) and blocks the calling thread for good, for the test to
/// kill the process there.
pub fn stop_here(name: &str) {
    if hit(name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::park();
        }
    }
}
