//! Per-key config tests: every key, every bound just inside and just outside,
//! every type mismatch, unknown and duplicate keys, and path resolution.

use super::tests::{check, parse, render, table, FILE, REQUIRED};
use super::*;

#[test]
fn api_url() {
    const EXPECTED: &str = "13: api_url: expected a URL like \"https://127.0.0.1:8006\" (http or https, a host, an optional port, no path), found";
    let e = |found: &str| format!("{EXPECTED} {found}");
    table(&[
        (
            r#""api_url": "https://pve1.example.com:8006""#,
            "api_url=https://pve1.example.com:8006",
        ),
        (
            r#""api_url": "http://127.0.0.1:8006""#,
            "api_url=http://127.0.0.1:8006",
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
            r#""api_url": "http://10.0.0.1""#,
            &e(
                r#""http://10.0.0.1": plain http is only allowed to a loopback IP address (127.0.0.0/8), not "10.0.0.1": use https"#,
            ),
        ),
        (
            r#""api_url": "http://localhost:8006""#,
            &e(
                r#""http://localhost:8006": plain http is only allowed to a loopback IP address; "localhost" is a name the resolver could answer with another host: use http://127.0.0.1"#,
            ),
        ),
        (
            r#""api_url": "http://localhost.:8006""#,
            &e(
                r#""http://localhost.:8006": plain http is only allowed to a loopback IP address; "localhost." is a name the resolver could answer with another host: use http://127.0.0.1"#,
            ),
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
        (
            r#""api_url": "pve1:8006""#,
            &e(r#""pve1:8006": it must start with https://"#),
        ),
        (
            r#""api_url": "https://:8006""#,
            &e(r#""https://:8006": the host is missing or not a valid name or address"#),
        ),
        (
            r#""api_url": "https://pve 1""#,
            &e(r#""https://pve 1": the host is missing or not a valid name or address"#),
        ),
        (
            r#""api_url": "https://root:hunter2@pve1""#,
            &e(
                r#""https://***@pve1": remove the user name and password, the agent authenticates with its API token"#,
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
            r#""api_url": "https://[::1]:8006""#,
            &e(
                r#""https://[::1]:8006": IPv6 address literals are not supported by the agent's http library; use a host name, or 127.0.0.1 for this node"#,
            ),
        ),
        (
            r#""api_url": "http://[::1]:8006""#,
            &e(
                r#""http://[::1]:8006": IPv6 address literals are not supported by the agent's http library; use a host name, or 127.0.0.1 for this node"#,
            ),
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
    let node =
        |h: &'static str| parse_with(&input, path, || Ok(h.to_string())).map(|c| c.fixed.node);
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
    assert_eq!(cfg.unwrap().fixed.node, "pve3");
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
        assert_eq!(cfg.fixed.token_id, ok);
    }
    for bad in [
        "agent@pve",
        "agent!tok",
        "@pve!tok",
        "agent@p!tok",
        "agent@pve!1tok",
        "agent@pve!t",
        "agent@pve!",
        "agent@pve!tok!x",
    ] {
        let err = parse(&input(bad)).unwrap_err().to_string();
        assert_eq!(err, format!("{expected} \"{bad}\""));
    }
    // An id pasted with its secret (by any separator) must not echo the secret, not
    // even the part a cut-short echo would show.
    let secret = "9f1c2d3e-dead-beef-0000-000000000000";
    for (bad, what) in [
        (format!("agent@pve!tok={secret}"), "'='"),
        (format!("agent@pve!tok:{secret}"), "':'"),
        (format!("agent@pve!tok {secret}"), "whitespace"),
        (format!("agent@pve!tok\\t{secret}"), "whitespace"),
        (format!("agent@pve!tok{secret}"), "a UUID"),
        ("age nt@pve!tok".to_string(), "whitespace"),
        ("a:b@pve!tok".to_string(), "':'"),
    ] {
        let err = parse(&input(&bad)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{expected} a value containing {what}, which looks like the id and its secret pasted together: put only the id here and the secret in token_secret_file")
        );
        assert!(!err.contains("9f1c2d3e"), "{err}");
    }
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
            r#""desired_file": "../other/d.json""#,
            r#"desired_file=Some("/etc/felhom-agent/../other/d.json")"#,
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
        assert_eq!(cfg.fixed.token_secret_file, dir.join("token"), "{config}");
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
    // The two timeouts must also fit each other (task_timeout_secs >= 2 x
    // shutdown_timeout_secs + 30): each is tested with its partner set so that only its
    // own bounds are in play, except where the pair itself is the problem.
    for (key, max, partner, partner_render) in [
        ("interval_secs", 86400, "", ""),
        (
            "task_timeout_secs",
            86400,
            r#", "shutdown_timeout_secs": 1"#,
            "\nshutdown_timeout=1s",
        ),
        (
            "shutdown_timeout_secs",
            3600,
            r#", "task_timeout_secs": 86400"#,
            "",
        ),
        ("drain_timeout_secs", 600, "", ""),
    ] {
        let col = key.len() + 6;
        for (fields, expected) in secs(key, col, max) {
            let input = format!("{{{fields}, {REQUIRED}{partner}}}");
            let cfg = parse(&input);
            let n: Option<u64> = fields.rsplit(' ').next().unwrap().parse().ok();
            if key == "task_timeout_secs" && n == Some(1) {
                assert_eq!(
                    cfg.unwrap_err().to_string(),
                    format!(
                        "{FILE}:1:{col}: task_timeout_secs: must be at least twice \
                         shutdown_timeout_secs plus 30 (32 seconds), found 1: raise \
                         task_timeout_secs or lower shutdown_timeout_secs"
                    )
                );
            } else if expected.is_empty() {
                let n = n.unwrap();
                // None of the bounds is a default, so the field must show.
                let shown = if key == "shutdown_timeout_secs" {
                    format!("task_timeout=86400s\nshutdown_timeout={n}s")
                } else {
                    format!("{}={n}s{partner_render}", field(key))
                };
                assert_eq!(render(&cfg.unwrap()), shown);
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
            r#"2: unknown key "verbose": the keys allowed here are api_url, node, token_id, token_secret_file, ca_file, desired_file, desired_url, desired_token_file, desired_ca_file, desired_interval_secs, report_url, state_dir, interval_secs, max_parallel, task_timeout_secs, shutdown_timeout_secs, drain_timeout_secs, unanswered_grace_secs, stop_mode, hold_tag, identity_guard, ha_mode, metrics_file, journal_compact_bytes"#,
        ),
        (
            r#""node": "a", "node": "b""#,
            r#"15: duplicate key "node" (first at line 1, column 2): keep only one"#,
        ),
    ]);
}

#[test]
fn desired_url_and_the_keys_that_go_with_it() {
    const URL: &str = r#""desired_url": "https://cp.example.com/nodes/pve1.json""#;
    let with_url = |extra: &str| format!("{URL}, {extra}");
    let expected = |found: &str| {
        format!("17: desired_url: expected a URL like \"https://cp.example.com/nodes/pve1.json\" (https, or http to 127.0.0.1; a host, an optional port, a path), found {found}")
    };
    table(&[
        (URL, "desired_url=Some(\"https://cp.example.com/nodes/pve1.json\")"),
        (
            r#""desired_url": "https://cp:8443?node=pve1""#,
            "desired_url=Some(\"https://cp:8443/?node=pve1\")",
        ),
        (
            r#""desired_url": "http://127.0.0.1:8080/d.json""#,
            "desired_url=Some(\"http://127.0.0.1:8080/d.json\")",
        ),
        (
            &with_url(r#""desired_token_file": "cp.token", "desired_interval_secs": 300"#),
            "desired_url=Some(\"https://cp.example.com/nodes/pve1.json\")\ndesired_token_file=Some(\"/etc/felhom-agent/cp.token\")\ndesired_interval=Some(300s)",
        ),
        (
            r#""desired_ca_file": "cp.pem", "report_url": "https://cp/r""#,
            "desired_ca_file=Some(\"/etc/felhom-agent/cp.pem\")\nreport_url=Some(\"https://cp/r\")",
        ),
        (
            r#""desired_url": "http://cp.example.com/x""#,
            &expected(r#""http://cp.example.com/x": plain http is only allowed to a loopback IP address (127.0.0.0/8), not "cp.example.com": use https"#),
        ),
        (
            r#""desired_url": "https://cp/x#top""#,
            &expected(r#""https://cp/x#top": remove the #fragment"#),
        ),
        (
            r#""desired_url": "https://u:hunter2@cp/x?token=abc""#,
            &expected(r#""https://***@cp/x?...": remove the user name and password (a token goes into desired_token_file); write an @ in the path as %40"#),
        ),
        (
            r#""desired_file": "d.json", "desired_url": "https://cp/d""#,
            "/etc/felhom-agent/config.json:1:43: desired_url: the desired state has one source: set desired_url or desired_file, not both",
        ),
        (
            r#""desired_token_file": "cp.token""#,
            "24: desired_token_file: only goes with desired_url, the token for it: set desired_url or remove desired_token_file",
        ),
        (
            r#""desired_interval_secs": 60"#,
            "27: desired_interval_secs: only goes with desired_url, how often it is asked: set desired_url or remove desired_interval_secs",
        ),
        (
            &with_url(r#""desired_interval_secs": 0"#),
            "/etc/felhom-agent/config.json:1:84: desired_interval_secs: expected an integer from 1 to 86400 seconds, found 0",
        ),
    ]);
    // A token pasted where its file belongs is refused without being shown.
    for token in [
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "0123456789abcdef0123456789abcdef01234567",
        "/etc/felhom-agent/glpat-xxxxxxxxxxxxxxxxxxxx",
        "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab",
    ] {
        let e = parse(&format!(
            r#"{{{URL}, "desired_token_file": "{token}", {REQUIRED}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("looks like a token itself"), "{e}");
        let name = token.rsplit('/').next().unwrap();
        assert!(!e.contains(&name[4..]), "{e}");
    }
    let cfg = parse(&format!(r#"{{{URL}, {REQUIRED}}}"#)).unwrap();
    assert_eq!(cfg.live.desired_interval(), cfg.live.interval);
}
