//! Tests for config parsing as a whole: defaults, missing keys, positions, several
//! problems at once, syntax. Per-key tables are in `tests_keys.rs`, the token
//! secret file in `tests_secret.rs`.

use super::*;
use crate::desired::MAX_PROBLEMS;

pub(super) const FILE: &str = "/etc/felhom-agent/config.json";
/// The two required keys, valid.
pub(super) const REQUIRED: &str =
    r#""token_id": "agent@pve!reconciler", "token_secret_file": "token""#;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, Path::new(FILE), || {
        Ok("pve1.example.com\n".to_string())
    })
}

/// The config `{REQUIRED}` gives, written out by hand: the defaults.
pub(super) fn defaults() -> Config {
    Config {
        path: PathBuf::from(FILE),
        fixed: Fixed {
            api_url: "https://127.0.0.1:8006".to_string(),
            node: "pve1".to_string(),
            token_id: "agent@pve!reconciler".to_string(),
            token_secret_file: PathBuf::from("/etc/felhom-agent/token"),
            ca_file: None,
            desired_ca_file: None,
            state_dir: PathBuf::from("/var/lib/felhom-agent"),
            max_parallel: 4,
            task_timeout: Duration::from_secs(600),
            unanswered_grace: Duration::from_secs(120),
            journal_compact_bytes: 4194304,
        },
        live: Live {
            desired_file: None,
            desired_url: None,
            desired_token_file: None,
            desired_interval: None,
            report_url: None,
            interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(20),
            stop_mode: StopMode::Shutdown,
            metrics_file: None,
            hold_tag: "felhom-hold".into(),
            identity_guard: true,
            ha_mode: HaMode::Skip,
        },
    }
}

/// The fields of `cfg` that differ from [`defaults`], one `key=value` per line, or
/// `defaults` when none do.
pub(super) fn render(cfg: &Config) -> String {
    let d = defaults();
    let mut out = Vec::new();
    let mut diff = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key}={a}"));
        }
    };
    diff("path", format!("{:?}", cfg.path), format!("{:?}", d.path));
    diff("api_url", cfg.fixed.api_url.clone(), d.fixed.api_url);
    diff("node", cfg.fixed.node.clone(), d.fixed.node);
    diff("token_id", cfg.fixed.token_id.clone(), d.fixed.token_id);
    let p = |p: &Path| p.display().to_string();
    let o = |p: &Option<PathBuf>| format!("{:?}", p.as_deref().map(|p| p.display().to_string()));
    diff(
        "token_secret_file",
        p(&cfg.fixed.token_secret_file),
        p(&d.fixed.token_secret_file),
    );
    diff("ca_file", o(&cfg.fixed.ca_file), o(&d.fixed.ca_file));
    diff(
        "desired_file",
        o(&cfg.live.desired_file),
        o(&d.live.desired_file),
    );
    let u = |u: &Option<crate::remote::RemoteUrl>| format!("{:?}", u.as_ref().map(|u| u.full()));
    diff(
        "desired_url",
        u(&cfg.live.desired_url),
        u(&d.live.desired_url),
    );
    diff(
        "desired_token_file",
        o(&cfg.live.desired_token_file),
        o(&d.live.desired_token_file),
    );
    diff(
        "desired_ca_file",
        o(&cfg.fixed.desired_ca_file),
        o(&d.fixed.desired_ca_file),
    );
    diff(
        "desired_interval",
        format!("{:?}", cfg.live.desired_interval),
        format!("{:?}", d.live.desired_interval),
    );
    diff("report_url", u(&cfg.live.report_url), u(&d.live.report_url));
    diff("state_dir", p(&cfg.fixed.state_dir), p(&d.fixed.state_dir));
    let s = |d: Duration| format!("{}s", d.as_secs());
    diff("interval", s(cfg.live.interval), s(d.live.interval));
    diff(
        "max_parallel",
        cfg.fixed.max_parallel.to_string(),
        d.fixed.max_parallel.to_string(),
    );
    diff(
        "task_timeout",
        s(cfg.fixed.task_timeout),
        s(d.fixed.task_timeout),
    );
    diff(
        "shutdown_timeout",
        s(cfg.live.shutdown_timeout),
        s(d.live.shutdown_timeout),
    );
    diff(
        "drain_timeout",
        s(cfg.live.drain_timeout),
        s(d.live.drain_timeout),
    );
    diff(
        "unanswered_grace",
        s(cfg.fixed.unanswered_grace),
        s(d.fixed.unanswered_grace),
    );
    diff(
        "stop_mode",
        cfg.live.stop_mode.to_string(),
        d.live.stop_mode.to_string(),
    );
    diff(
        "metrics_file",
        o(&cfg.live.metrics_file),
        o(&d.live.metrics_file),
    );
    diff(
        "journal_compact_bytes",
        cfg.fixed.journal_compact_bytes.to_string(),
        d.fixed.journal_compact_bytes.to_string(),
    );
    if out.is_empty() {
        "defaults".to_string()
    } else {
        out.join("\n")
    }
}

/// Parses `input` and compares the outcome with `expected`: the error's Display, or
/// the fields that differ from the defaults.
pub(super) fn check(input: &str, expected: &str) {
    let got = match parse(input) {
        Ok(cfg) => render(&cfg),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "\ninput: {input}");
}

/// Checks `(fields, expected)` pairs, each as `{<fields>, <REQUIRED>}`: the fields
/// start at column 2. An expected error is written from the column on
/// (`16: max_parallel: ...`); the file and line 1 are added here.
pub(super) fn table(cases: &[(&str, &str)]) {
    for (fields, expected) in cases {
        let input = format!("{{{fields}, {REQUIRED}}}");
        let expected = match expected.split_once(':') {
            Some((col, _)) if col.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{FILE}:1:{expected}")
            }
            _ => expected.to_string(),
        };
        check(&input, &expected);
    }
}

#[test]
fn only_required_keys_gives_the_defaults() {
    assert_eq!(parse(&format!("{{{REQUIRED}}}")).unwrap(), defaults());
    check(&format!("{{{REQUIRED}}}"), "defaults");
    check(&format!(" {{\n{REQUIRED}\n}}\n"), "defaults");
}

#[test]
fn missing_required_keys() {
    check(
        "{}",
        &format!(
            "{FILE}:1:1: token_id: missing: add \"token_id\": \"USER@REALM!TOKENID\", the API token the agent uses
{FILE}:1:1: token_secret_file: missing: add \"token_secret_file\": \"<path>\", a file that holds only the token's secret"
        ),
    );
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let input = r#"{
 "api_url": "https://pve1:8006/api2/json",
 "token_id": "agent@pve!reconciler",
 "max_parallel": 0,
 "stop_mode": "halt",
 "token_secret_file": "token", "intervall_secs": 30
}"#;
    check(
        input,
        &format!(
            r#"{FILE}:2:13: api_url: expected a URL like "https://127.0.0.1:8006" (http or https, a host, an optional port, no path), found "https://pve1:8006/api2/json": remove the path, the agent adds /api2/json itself
{FILE}:4:18: max_parallel: expected an integer from 1 to 64, found 0
{FILE}:5:15: stop_mode: expected "shutdown" or "stop", found a string "halt"
{FILE}:6:32: unknown key "intervall_secs": did you mean "interval_secs"?"#
        ),
    );
}

#[test]
fn problems_are_capped() {
    let keys: Vec<String> = (0..25).map(|i| format!("\"k{i}\": {i}")).collect();
    let input = format!("{{{REQUIRED},\n{}}}", keys.join(",\n"));
    let err = parse(&input).unwrap_err();
    let text = err.to_string();
    assert_eq!(text.lines().count(), MAX_PROBLEMS + 1, "{text}");
    assert!(text.ends_with(&format!(
        "{FILE}: 5 more problems not shown: fix these and check again"
    )));
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn syntax_and_shape() {
    check(
        "",
        &format!("{FILE}:1:1: invalid JSON: the file is empty: it must hold one JSON object"),
    );
    check(
        "{\"token_id\": \"a@pve!tok\",}",
        &format!("{FILE}:1:26: invalid JSON: expected a key, found '}}': remove the trailing comma, JSON does not allow one"),
    );
    check(
        "\"config\"",
        &format!(
            r#"{FILE}:1:1: expected an object like {{"token_id": "agent@pve!reconciler", "token_secret_file": "token"}}, found a string "config""#
        ),
    );
}

#[test]
fn missing_file_and_ca_default() {
    let err = Config::load(Path::new("/nonexistent/felhom/config.json")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/felhom/config.json: "),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());

    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let gone = Path::new("/nonexistent/felhom/pve-root-ca.pem");
    let mine = Path::new("/etc/ssl/mine.pem");
    assert_eq!(resolve_ca(Some(mine), &here), Some(mine.to_path_buf()));
    assert_eq!(resolve_ca(None, &here), Some(here.clone()));
    assert_eq!(resolve_ca(None, gone), None);
    // The default directory is not a file: it is not trusted as one.
    assert_eq!(
        resolve_ca(None, Path::new(env!("CARGO_MANIFEST_DIR"))),
        None
    );
}
