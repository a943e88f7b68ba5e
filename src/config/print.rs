//! A config written back out in the file format: every setting, one per line, in the
//! order of the key table, with paths as they were resolved (absolute). Reading the
//! text back gives the same [`Config`], and it shows an operator the values the agent
//! actually runs with, defaults included.

use super::{Config, KEYS};
use std::path::Path;

impl Config {
    /// The config as JSON text that [`Config::parse`] reads back into an equal
    /// `Config` (given the same path). Every key is written except the optional paths
    /// that are not set (`ca_file`, `desired_file`, `metrics_file`): leaving a key out
    /// is how the file says "not set". `node` is always written, so reading the text
    /// back does not consult the hostname. A path that is not valid UTF-8 (possible
    /// only through a non-UTF-8 config directory) is written with U+FFFD in place of
    /// the bad bytes, so it alone does not read back the same.
    pub fn to_json(&self) -> String {
        let (f, l) = (&self.fixed, &self.live);
        let mut lines = Vec::new();
        for key in KEYS {
            let value = match *key {
                "api_url" => Some(string(&f.api_url)),
                "node" => Some(string(&f.node)),
                "token_id" => Some(string(&f.token_id)),
                "token_secret_file" => Some(path(&f.token_secret_file)),
                "ca_file" => f.ca_file.as_deref().map(path),
                "desired_file" => l.desired_file.as_deref().map(path),
                "state_dir" => Some(path(&f.state_dir)),
                "interval_secs" => Some(l.interval.as_secs().to_string()),
                "max_parallel" => Some(f.max_parallel.to_string()),
                "task_timeout_secs" => Some(f.task_timeout.as_secs().to_string()),
                "shutdown_timeout_secs" => Some(l.shutdown_timeout.as_secs().to_string()),
                "drain_timeout_secs" => Some(l.drain_timeout.as_secs().to_string()),
                "unanswered_grace_secs" => Some(f.unanswered_grace.as_secs().to_string()),
                "stop_mode" => Some(string(l.stop_mode.as_str())),
                "metrics_file" => l.metrics_file.as_deref().map(path),
                "journal_compact_bytes" => Some(f.journal_compact_bytes.to_string()),
                other => unreachable!("no printer for the config key {other}"),
            };
            if let Some(v) = value {
                lines.push(format!("  {}: {v}", string(key)));
            }
        }
        format!("{{\n{}\n}}\n", lines.join(",\n"))
    }
}

fn string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn path(p: &Path) -> String {
    string(&p.to_string_lossy())
}
