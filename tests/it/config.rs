//! Loading real config files from disk: relative paths, the secret file, and the
//! messages an operator sees for a broken file.

use felhom_agent::agent::provider_for;
use felhom_agent::config::{Config, ConfigError, Fixed, Live, StopMode};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A directory under the system temp dir with a unique name, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "felhom-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (bytes) with permission bits `mode` and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const SECRET: &str = "5e0b7c1a-1111-4222-8333-444455556666";

#[test]
fn a_full_config_loads_with_paths_beside_it() {
    let dir = TempDir::new("config-full");
    dir.write("token", format!("{SECRET}\n"), 0o600);
    dir.write(
        "desired.json",
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        0o644,
    );
    let path = dir.write(
        "config.json",
        r#"{
  "api_url": "https://pve1.example.com:8006/",
  "node": "pve1",
  "token_id": "agent@pve!reconciler",
  "token_secret_file": "token",
  "ca_file": "/etc/ssl/certs/pve.pem",
  "desired_file": "desired.json",
  "state_dir": "state",
  "interval_secs": 15,
  "max_parallel": 8,
  "task_timeout_secs": 900,
  "shutdown_timeout_secs": 120,
  "drain_timeout_secs": 30,
  "unanswered_grace_secs": 60,
  "stop_mode": "stop",
  "metrics_file": "/run/felhom-agent/metrics.prom",
  "journal_compact_bytes": 1048576
}
"#,
        0o644,
    );
    let cfg = Config::load(&path).unwrap();
    let d = dir.path();
    assert_eq!(
        cfg,
        Config {
            path: path.clone(),
            fixed: Fixed {
                api_url: "https://pve1.example.com:8006".to_string(),
                node: "pve1".to_string(),
                token_id: "agent@pve!reconciler".to_string(),
                token_secret_file: d.join("token"),
                ca_file: Some(PathBuf::from("/etc/ssl/certs/pve.pem")),
                desired_ca_file: None,
                state_dir: d.join("state"),
                max_parallel: 8,
                task_timeout: Duration::from_secs(900),
                unanswered_grace: Duration::from_secs(60),
                journal_compact_bytes: 1048576,
            },
            live: Live {
                desired_file: Some(d.join("desired.json")),
                desired_url: None,
                desired_token_file: None,
                desired_interval: None,
                report_url: None,
                interval: Duration::from_secs(15),
                shutdown_timeout: Duration::from_secs(120),
                drain_timeout: Duration::from_secs(30),
                stop_mode: StopMode::Stop,
                metrics_file: Some(PathBuf::from("/run/felhom-agent/metrics.prom")),
                hold_tag: "felhom-hold".into(),
                identity_guard: true,
                ha_mode: felhom_agent::config::HaMode::Skip,
            },
        }
    );
    assert_eq!(cfg.fixed.resolved_ca_file(), cfg.fixed.ca_file);
    assert_eq!(cfg.fixed.token_secret().unwrap().expose(), SECRET);
    assert!(!format!("{cfg:?}").contains(SECRET));

    let provider = provider_for(&cfg).unwrap();
    assert_eq!(
        provider.name(),
        format!("file {}", d.join("desired.json").display())
    );
    let state = provider.load().unwrap();
    assert_eq!(state.guests.len(), 1);
}

#[test]
fn a_broken_config_names_the_file_the_places_and_the_fixes() {
    let dir = TempDir::new("config-broken");
    let path = dir.write(
        "config.json",
        "{\n  \"token_id\": \"agent@pve!reconciler\",\n  \"token_secret_file\": \"token\",\n max_parallel: 0\n}",
        0o644,
    );
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4:2: invalid JSON: expected a key in double quotes, found 'm'",
            path.display()
        )
    );

    fs::write(
        &path,
        "{\n  \"token_id\": \"agent@pve!reconciler\",\n  \"token_secret_file\": \"token\",\n \"max_parallel\": 0,\n \"stop_mode\": \"graceful\"\n}",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}:4:18: max_parallel: expected an integer from 1 to 64, found 0\n\
             {p}:5:15: stop_mode: expected \"shutdown\" or \"stop\", found a string \"graceful\""
        )
    );
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("not Invalid")
    };
    assert_eq!(problems[0].key.as_deref(), Some("max_parallel"));
    assert_eq!((problems[0].pos.line, problems[0].pos.col), (4, 18));
}

#[test]
fn a_config_that_is_not_utf8_is_located() {
    let dir = TempDir::new("config-utf8");
    let path = dir.write("config.json", b"{\"node\": \"pve\xe91\"}", 0o644);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:14: the file is not valid UTF-8: save it as UTF-8 text",
            path.display()
        )
    );
}

#[test]
fn a_readable_secret_file_is_refused_with_the_chmod_fix() {
    let dir = TempDir::new("config-secret");
    let token = dir.write("token", SECRET, 0o640);
    let path = dir.write(
        "config.json",
        r#"{"node": "pve1", "token_id": "agent@pve!reconciler", "token_secret_file": "token"}"#,
        0o644,
    );
    let cfg = Config::load(&path).unwrap();
    let err = cfg.fixed.token_secret().unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "token secret file {0} is readable or writable by group or others (mode 0640): run chmod 600 {0}",
            token.display()
        )
    );
    assert!(!format!("{text} {err:?}").contains(SECRET));

    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(cfg.fixed.token_secret().unwrap().expose(), SECRET);
}

#[test]
fn a_missing_config_says_so() {
    let dir = TempDir::new("config-missing");
    let path = dir.path().join("config.json");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read config file {}: ", path.display())),
        "{err}"
    );
}
