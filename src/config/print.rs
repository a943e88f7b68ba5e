//! A config written back out in the file format: every setting, one per line, in the
//! order of the key table, with paths as they were resolved (absolute). Reading the
//! text back gives the same [`Config`], and it shows an operator the values the agent
//! actually runs with, defaults included.

use super::{Config, HaMode, KEYS};
use std::path::Path;

impl Config {
    /// The config as JSON text that [`Config::parse`] reads back into an equal
    /// `Config` (given the same path). Every key is written except the optional ones
    /// that are not set (`ca_file`, `desired_file`, `metrics_file`, the `desired_*`
    /// keys, `report_url`): leaving a key out is how the file says "not set". URLs are
    /// written whole, query included: this text is for the operator, not for a log. `node` is always written, so reading the text
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
                "desired_url" => l.desired_url.as_ref().map(|u| string(&u.full())),
                "desired_token_file" => l.desired_token_file.as_deref().map(path),
                "desired_ca_file" => f.desired_ca_file.as_deref().map(path),
                "desired_interval_secs" => l.desired_interval.map(|d| d.as_secs().to_string()),
                "report_url" => l.report_url.as_ref().map(|u| string(&u.full())),
                "state_dir" => Some(path(&f.state_dir)),
                "interval_secs" => Some(l.interval.as_secs().to_string()),
                "max_parallel" => Some(f.max_parallel.to_string()),
                "task_timeout_secs" => Some(f.task_timeout.as_secs().to_string()),
                "shutdown_timeout_secs" => Some(l.shutdown_timeout.as_secs().to_string()),
                "drain_timeout_secs" => Some(l.drain_timeout.as_secs().to_string()),
                "unanswered_grace_secs" => Some(f.unanswered_grace.as_secs().to_string()),
                "stop_mode" => Some(string(l.stop_mode.as_str())),
                "hold_tag" => Some(string(&l.hold_tag)),
                "identity_guard" => Some(l.identity_guard.to_string()),
                "ha_mode" => Some(string(match l.ha_mode {
                    HaMode::Skip => "skip",
                    HaMode::Request => "request",
                })),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_writes_every_key_in_table_order() {
        let mut cfg = crate::config::tests::defaults();
        cfg.fixed.ca_file = Some("/etc/ssl/ca.pem".into());
        cfg.live.desired_file = Some("/etc/felhom-agent/desired \"x\".json".into());
        cfg.live.metrics_file = Some("/run/m.prom".into());
        cfg.fixed.desired_ca_file = Some("/etc/ssl/cp.pem".into());
        cfg.live.desired_token_file = Some("/etc/felhom-agent/cp.token".into());
        cfg.live.desired_interval = Some(std::time::Duration::from_secs(300));
        cfg.live.report_url = crate::remote::RemoteUrl::parse("https://cp/r?node=pve1").ok();
        cfg.live.desired_url = crate::remote::RemoteUrl::parse("https://cp/d.json?ref=main").ok();
        let text = cfg.to_json();
        let node = crate::json::parse(&text).unwrap();
        let crate::json::Value::Object(members) = node.value else {
            panic!("not an object: {text}");
        };
        let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, KEYS);
        assert!(
            text.contains(r#""desired_url": "https://cp/d.json?ref=main""#),
            "{text}"
        );
        // Both sources at once are refused, so the round trip is tried with the URL only.
        cfg.live.desired_file = None;
        crate::config::tests_fuzz::round_trip(&cfg);
        // The defaults leave the optional paths out, and a relative setting comes back
        // absolute.
        let cfg = crate::config::tests::parse(&format!(
            "{{{}, \"desired_file\": \"d.json\"}}",
            crate::config::tests::REQUIRED
        ))
        .unwrap();
        assert_eq!(
            cfg.to_json(),
            r#"{
  "api_url": "https://127.0.0.1:8006",
  "node": "pve1",
  "token_id": "agent@pve!reconciler",
  "token_secret_file": "/etc/felhom-agent/token",
  "desired_file": "/etc/felhom-agent/d.json",
  "state_dir": "/var/lib/felhom-agent",
  "interval_secs": 30,
  "max_parallel": 4,
  "task_timeout_secs": 600,
  "shutdown_timeout_secs": 60,
  "drain_timeout_secs": 20,
  "unanswered_grace_secs": 120,
  "stop_mode": "shutdown",
  "hold_tag": "felhom-hold",
  "identity_guard": true,
  "ha_mode": "skip",
  "journal_compact_bytes": 4194304
}
"#
        );
    }
}
