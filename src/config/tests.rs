//! Tests for config parsing: defaults, every key with its bounds and types,
//! unknown and duplicate keys, positions, several problems at once, and path
//! resolution. The token secret file is tested in `tests_secret.rs`.

use super::*;
use crate::desired::{provider_for, MAX_PROBLEMS};

const FILE: &str = "/etc/felhom-agent/config.json";
/// The two required keys, valid.
const REQUIRED: &str = r#""token_id": "agent@pve!reconciler", "token_secret_file": "token""#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, Path::new(FILE), || {
        Ok("pve1.example.com\n".to_string())
    })
}

/// The config `{REQUIRED}` gives, written out by hand: the defaults.
fn defaults() -> Config {
    Config {
        path: PathBuf::from(FILE),
        api_url: "https://127.0.0.1:8006".to_string(),
        node: "pve1".to_string(),
        token_id: "agent@pve!reconciler".to_string(),
        token_secret_file: PathBuf::from("/etc/felhom-agent/token"),
        ca_file: None,
        desired_file: None,
        state_dir: PathBuf::from("/var/lib/felhom-agent"),
        interval: Duration::from_secs(30),
        max_parallel: 4,
        task_timeout: Duration::from_secs(600),
        shutdown_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(20),
        stop_mode: StopMode::Shutdown,
        metrics_file: None,
        journal_compact_bytes: 4194304,
    }
}

/// The fields of `cfg` that differ from [`defaults`], one `key=value` per line, or
/// `defaults` when none do.
fn render(cfg: &Config) -> String {
    let d = defaults();
    let mut out = Vec::new();
    let mut diff = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key}={a}"));
        }
    };
    diff("path", format!("{:?}", cfg.path), format!("{:?}", d.path));
    diff("api_url", cfg.api_url.clone(), d.api_url);
    diff("node", cfg.node.clone(), d.node);
    diff("token_id", cfg.token_id.clone(), d.token_id);
    let p = |p: &Path| p.display().to_string();
    let o = |p: &Option<PathBuf>| format!("{:?}", p.as_deref().map(|p| p.display().to_string()));
    diff(
        "token_secret_file",
        p(&cfg.token_secret_file),
        p(&d.token_secret_file),
    );
    diff("ca_file", o(&cfg.ca_file), o(&d.ca_file));
    diff("desired_file", o(&cfg.desired_file), o(&d.desired_file));
    diff("state_dir", p(&cfg.state_dir), p(&d.state_dir));
    let s = |d: Duration| format!("{}s", d.as_secs());
    diff("interval", s(cfg.interval), s(d.interval));
    diff(
        "max_parallel",
        cfg.max_parallel.to_string(),
        d.max_parallel.to_string(),
    );
    diff("task_timeout", s(cfg.task_timeout), s(d.task_timeout));
    diff(
        "shutdown_timeout",
        s(cfg.shutdown_timeout),
        s(d.shutdown_timeout),
    );
    diff("drain_timeout", s(cfg.drain_timeout), s(d.drain_timeout));
    diff(
        "stop_mode",
        cfg.stop_mode.to_string(),
        d.stop_mode.to_string(),
    );
    diff("metrics_file", o(&cfg.metrics_file), o(&d.metrics_file));
    diff(
        "journal_compact_bytes",
        cfg.journal_compact_bytes.to_string(),
        d.journal_compact_bytes.to_string(),
    );
    if out.is_empty() {
        "defaults".to_string()
    } else {
        out.join("\n")
    }
}

/// Parses `input` and compares the outcome with `expected`: the error's Display, or
/// the fields that differ from the defaults.
fn check(input: &str, expected: &str) {
    let got = match parse(input) {
        Ok(cfg) => render(&cfg),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "\ninput: {input}");
}

/// Checks `(fields, expected)` pairs, each as `{<fields>, <REQUIRED>}`: the fields
/// start at column 2. An expected error is written from the column on
/// (`16: max_parallel: ...`); the file and line 1 are added here.
fn table(cases: &[(&str, &str)]) {
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
fn api_url() {
    const EXPECTED: &str = "13: api_url: expected a URL like \"https://127.0.0.1:8006\" (http or https, a host, an optional port, no path), found";
    let e = |found: &str| format!("{EXPECTED} {found}");
    table(&[
        (
            r#""api_url": "https://pve1.example.com:8006""#,
            "api_url=https://pve1.example.com:8006",
        ),
        (r#""api_url": "http://10.0.0.1""#, "api_url=http://10.0.0.1"),
        (
            r#""api_url": "https://[::1]:8006""#,
            "api_url=https://[::1]:8006",
        ),
        (
            r#""api_url": "https://[fe80::1]""#,
            "api_url=https://[fe80::1]",
        ),
        (
            r#""api_url": "https://pve1:8006/""#,
            "api_url=https://pve1:8006",
        ),
        (
            r#""api_url": "https://127.0.0.1:65535""#,
            "api_url=https://127.0.0.1:65535",
        ),
        (
            r#""api_url": "https://127.0.0.1:1""#,
            "api_url=https://127.0.0.1:1",
        ),
        (
            r#""api_url": "https://pve1:8006/api2/json""#,
            &e(
                r#""https://pve1:8006/api2/json": remove the path, the agent adds /api2/json itself"#,
            ),
        ),
        (
            r#""api_url": "https://pve1:8006?x=1""#,
            &e(r#""https://pve1:8006?x=1": remove the path, the agent adds /api2/json itself"#),
        ),
        (
            r#""api_url": "ftp://pve1""#,
            &e(r#""ftp://pve1": the scheme must be https or http"#),
        ),
        (
            r#""api_url": "HTTPS://pve1""#,
            &e(r#""HTTPS://pve1": the scheme must be https or http"#),
        ),
        (r#""api_url": "pve1:8006""#, &e(r#""pve1:8006""#)),
        (
            r#""api_url": "https://:8006""#,
            &e(r#""https://:8006": the host is missing or not a valid name or address"#),
        ),
        (
            r#""api_url": "https://pve 1""#,
            &e(r#""https://pve 1": the host is missing or not a valid name or address"#),
        ),
        (
            r#""api_url": "https://root@pve1""#,
            &e(
                r#""https://root@pve1": remove the user name, the agent authenticates with its API token"#,
            ),
        ),
        (
            r#""api_url": "https://pve1:0""#,
            &e(r#""https://pve1:0": the port must be a number from 1 to 65535"#),
        ),
        (
            r#""api_url": "https://pve1:65536""#,
            &e(r#""https://pve1:65536": the port must be a number from 1 to 65535"#),
        ),
        (
            r#""api_url": "https://pve1:""#,
            &e(r#""https://pve1:": the port must be a number from 1 to 65535"#),
        ),
        (
            r#""api_url": "https://pve1:+80""#,
            &e(r#""https://pve1:+80": the port must be a number from 1 to 65535"#),
        ),
        (
            r#""api_url": "https://[::1""#,
            &e(r#""https://[::1": an IPv6 address needs a closing ']'"#),
        ),
        (
            r#""api_url": "https://[pve1]:8006""#,
            &e(r#""https://[pve1]:8006": the host is not a valid IPv6 address"#),
        ),
        (
            r#""api_url": "https://[::1]8006""#,
            &e(r#""https://[::1]8006": unexpected text after the IPv6 address"#),
        ),
        (
            r#""api_url": 8006"#,
            "13: api_url: expected a string, found 8006",
        ),
        (
            r#""api_url": null"#,
            "13: api_url: expected a string, found null",
        ),
    ]);
}

#[test]
fn node() {
    const EXPECTED: &str =
        "10: node: expected a node name as shown in the Proxmox GUI (letters, digits and '-'), found";
    table(&[
        (r#""node": "pve-2""#, "node=pve-2"),
        (r#""node": "7""#, "node=7"),
        (r#""node": "pve_2""#, &format!(r#"{EXPECTED} "pve_2""#)),
        (r#""node": "-pve""#, &format!(r#"{EXPECTED} "-pve""#)),
        (r#""node": "pve-""#, &format!(r#"{EXPECTED} "pve-""#)),
        (
            r#""node": "pve1.example.com""#,
            &format!(r#"{EXPECTED} "pve1.example.com""#),
        ),
        (r#""node": """#, &format!(r#"{EXPECTED} """#)),
        (r#""node": 1"#, "10: node: expected a string, found 1"),
    ]);
}

#[test]
fn node_defaults_to_the_short_hostname() {
    let input = format!("{{{REQUIRED}}}");
    let path = Path::new(FILE);
    let node = |h: &'static str| parse_with(&input, path, || Ok(h.to_string())).map(|c| c.node);
    assert_eq!(node("pve7\n").unwrap(), "pve7");
    assert_eq!(node("pve7.lab.example.com").unwrap(), "pve7");
    let err = node("bad_host.example.com").unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{FILE}:1:1: node: not set, and the hostname \"bad_host.example.com\" is not a valid node name: set \"node\" to this node's name as shown in the Proxmox GUI")
    );
    let err = parse_with(&input, path, || Err(io::Error::other("no proc")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("{FILE}:1:1: node: not set, and the hostname cannot be read from /proc/sys/kernel/hostname (no proc): set \"node\" to this node's name as shown in the Proxmox GUI")
    );
    // A set node never reads the hostname.
    let cfg = parse_with(&format!(r#"{{"node": "pve3", {REQUIRED}}}"#), path, || {
        panic!("hostname read")
    });
    assert_eq!(cfg.unwrap().node, "pve3");
}

#[test]
fn token_id() {
    let input = |id: &str| format!(r#"{{"token_id": "{id}", "token_secret_file": "t"}}"#);
    const EXPECTED: &str = "{FILE}:1:14: token_id: expected an API token id like \"agent@pve!reconciler\" (USER@REALM!TOKENID), found";
    let expected = EXPECTED.replace("{FILE}", FILE);
    for ok in [
        "root@pam!agent",
        "a.b-c@ldap-x!t_1",
        "user@example.com@pve!tok",
        "x@pve!ab",
    ] {
        let cfg = parse(&input(ok)).unwrap();
        assert_eq!(cfg.token_id, ok);
    }
    for bad in [
        "agent@pve",
        "agent!tok",
        "@pve!tok",
        "agent@p!tok",
        "agent@pve!1tok",
        "agent@pve!t",
        "agent@pve!",
        "age nt@pve!tok",
        "a:b@pve!tok",
        "agent@pve!tok!x",
    ] {
        let err = parse(&input(bad)).unwrap_err().to_string();
        assert_eq!(err, format!("{expected} \"{bad}\""));
    }
    // A pasted `id=secret` must not echo the secret.
    let err = parse(&input("agent@pve!tok=9f1c2d3e-dead-beef"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("{expected} a value containing '=': put only the id here and the secret in token_secret_file")
    );
    check(
        r#"{"token_id": 5, "token_secret_file": "t"}"#,
        &format!("{FILE}:1:14: token_id: expected a string, found 5"),
    );
}

#[test]
fn paths_are_resolved_against_the_config_directory() {
    table(&[
        (
            r#""token_secret_file": "/root/secret""#,
            r#"75: duplicate key "token_secret_file" (first at line 1, column 2): keep only one"#,
        ),
        (
            r#""ca_file": "ca.pem""#,
            r#"ca_file=Some("/etc/felhom-agent/ca.pem")"#,
        ),
        (
            r#""ca_file": "/etc/ssl/ca.pem""#,
            r#"ca_file=Some("/etc/ssl/ca.pem")"#,
        ),
        (
            r#""desired_file": "desired.json""#,
            r#"desired_file=Some("/etc/felhom-agent/desired.json")"#,
        ),
        (
            r#""desired_file": "../shared/d.json""#,
            r#"desired_file=Some("/etc/felhom-agent/../shared/d.json")"#,
        ),
        (
            r#""metrics_file": "/run/felhom/metrics.prom""#,
            r#"metrics_file=Some("/run/felhom/metrics.prom")"#,
        ),
        (
            r#""state_dir": "state""#,
            "state_dir=/etc/felhom-agent/state",
        ),
        (r#""state_dir": "/var/lib/x/""#, "state_dir=/var/lib/x/"),
        (
            r#""state_dir": """#,
            "15: state_dir: expected a path, found an empty string",
        ),
        (
            r#""ca_file": null"#,
            "13: ca_file: expected a string, found null",
        ),
        (
            r#""desired_file": ["a"]"#,
            "18: desired_file: expected a string, found an array",
        ),
        (
            r#""metrics_file": "a\u0000b""#,
            "18: metrics_file: expected a path, found a string with a NUL character",
        ),
    ]);
    let abs = r#"{"token_id": "agent@pve!reconciler", "token_secret_file": "/root/secret"}"#;
    check(abs, "token_secret_file=/root/secret");
    // A relative config path is taken from the working directory, once, at parse.
    let cwd = std::env::current_dir().unwrap();
    let text = format!("{{{REQUIRED}}}");
    for (config, dir) in [
        ("conf/config.json", cwd.join("conf")),
        ("config.json", cwd.clone()),
    ] {
        let cfg = parse_with(&text, Path::new(config), || Ok("pve1".to_string())).unwrap();
        assert_eq!(cfg.token_secret_file, dir.join("token"), "{config}");
        assert_eq!(cfg.path, Path::new(config));
    }
}

#[test]
fn durations_and_counts() {
    let secs = |key: &str, col: usize, max: u64| {
        [
            (format!(r#""{key}": 1"#), String::new()),
            (format!(r#""{key}": {max}"#), String::new()),
            (
                format!(r#""{key}": 0"#),
                format!("{col}: {key}: expected an integer from 1 to {max} seconds, found 0"),
            ),
            (
                format!(r#""{key}": {}"#, max + 1),
                format!("{col}: {key}: expected an integer from 1 to {max} seconds, found {}", max + 1),
            ),
            (
                format!(r#""{key}": "30""#),
                format!("{col}: {key}: expected an integer from 1 to {max} seconds, found a string \"30\": write the number without quotes"),
            ),
            (
                format!(r#""{key}": 30.5"#),
                format!("{col}: {key}: expected an integer from 1 to {max} seconds, found 30.5"),
            ),
        ]
    };
    let field = |key: &str| match key {
        "interval_secs" => "interval",
        "task_timeout_secs" => "task_timeout",
        "shutdown_timeout_secs" => "shutdown_timeout",
        _ => "drain_timeout",
    };
    for (key, max) in [
        ("interval_secs", 86400),
        ("task_timeout_secs", 86400),
        ("shutdown_timeout_secs", 3600),
        ("drain_timeout_secs", 600),
    ] {
        let col = key.len() + 6;
        for (fields, expected) in secs(key, col, max) {
            let input = format!("{{{fields}, {REQUIRED}}}");
            let cfg = parse(&input);
            if expected.is_empty() {
                let n: u64 = fields.rsplit(' ').next().unwrap().parse().unwrap();
                // None of the bounds is a default, so the field must show.
                assert_eq!(render(&cfg.unwrap()), format!("{}={n}s", field(key)));
            } else {
                assert_eq!(cfg.unwrap_err().to_string(), format!("{FILE}:1:{expected}"));
            }
        }
    }
    table(&[
        (r#""max_parallel": 1"#, "max_parallel=1"),
        (r#""max_parallel": 64"#, "max_parallel=64"),
        (r#""max_parallel": 0"#, "18: max_parallel: expected an integer from 1 to 64, found 0"),
        (r#""max_parallel": 65"#, "18: max_parallel: expected an integer from 1 to 64, found 65"),
        (r#""max_parallel": -4"#, "18: max_parallel: expected an integer from 1 to 64, found -4"),
        (r#""journal_compact_bytes": 4096"#, "journal_compact_bytes=4096"),
        (
            r#""journal_compact_bytes": 18446744073709551615"#,
            "journal_compact_bytes=18446744073709551615",
        ),
        (
            r#""journal_compact_bytes": 4095"#,
            "27: journal_compact_bytes: expected an integer of at least 4096 bytes, found 4095",
        ),
        (
            r#""journal_compact_bytes": 18446744073709551616"#,
            "27: journal_compact_bytes: expected an integer of at least 4096 bytes, found 18446744073709551616",
        ),
    ]);
}

#[test]
fn stop_mode() {
    table(&[
        (r#""stop_mode": "shutdown""#, "defaults"),
        (r#""stop_mode": "stop""#, "stop_mode=stop"),
        (
            r#""stop_mode": "kill""#,
            r#"15: stop_mode: expected "shutdown" or "stop", found a string "kill""#,
        ),
        (
            r#""stop_mode": "Stop""#,
            r#"15: stop_mode: expected "shutdown" or "stop", found a string "Stop""#,
        ),
        (
            r#""stop_mode": false"#,
            r#"15: stop_mode: expected "shutdown" or "stop", found false"#,
        ),
    ]);
    assert_eq!(StopMode::Shutdown.to_string(), "shutdown");
    assert_eq!(StopMode::Stop.as_str(), "stop");
}

#[test]
fn unknown_and_duplicate_keys() {
    table(&[
        (
            r#""interval": 30"#,
            r#"2: unknown key "interval": did you mean "interval_secs"?"#,
        ),
        (
            r#""max_paralel": 3"#,
            r#"2: unknown key "max_paralel": did you mean "max_parallel"?"#,
        ),
        (
            r#""API_URL": "https://x""#,
            r#"2: unknown key "API_URL": did you mean "api_url"?"#,
        ),
        (
            r#""verbose": true"#,
            r#"2: unknown key "verbose": the keys allowed here are api_url, node, token_id, token_secret_file, ca_file, desired_file, state_dir, interval_secs, max_parallel, task_timeout_secs, shutdown_timeout_secs, drain_timeout_secs, stop_mode, metrics_file, journal_compact_bytes"#,
        ),
        (
            r#""node": "a", "node": "b""#,
            r#"15: duplicate key "node" (first at line 1, column 2): keep only one"#,
        ),
    ]);
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

#[test]
fn provider_follows_desired_file() {
    let mut cfg = defaults();
    assert_eq!(provider_for(&cfg).name(), "none");
    cfg.desired_file = Some(PathBuf::from("/etc/felhom-agent/desired.json"));
    assert_eq!(
        provider_for(&cfg).name(),
        "file /etc/felhom-agent/desired.json"
    );
}
