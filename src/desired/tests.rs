//! Tests for the desired-state document as a whole: top-level keys, positions,
//! several problems at once, the problem cap, fingerprints, providers. JSON syntax
//! is tested in `tests_syntax.rs`, per-field guest checks in `tests_guest.rs`.

use super::*;
use crate::pve::Vmid;

pub(super) const FILE: &str = "/srv/d.json";

/// Parses `input` and compares the outcome, rendered as text, with `expected`: the
/// error's Display, or one line per parsed guest (`ok` for none).
pub(super) fn check(input: &str, expected: &str) {
    let got = match DesiredState::parse(input, Path::new(FILE)) {
        Ok(state) => render(&state),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "\ninput: {input}");
}

fn render(state: &DesiredState) -> String {
    if state.guests.is_empty() {
        return "ok".to_string();
    }
    let mut lines = Vec::new();
    for (vmid, g) in &state.guests {
        assert_eq!(*vmid, g.vmid);
        let mut line = format!("{vmid}");
        if let Some(v) = &g.name {
            line += &format!(" name={v:?}");
        }
        if let Some(v) = g.state {
            line += &format!(" state={v}");
        }
        if let Some(v) = g.cores {
            line += &format!(" cores={v}");
        }
        if let Some(v) = g.memory {
            line += &format!(" memory={v}");
        }
        if let Some(v) = g.swap {
            line += &format!(" swap={v}");
        }
        if let Some(v) = &g.description {
            line += &format!(" description={v:?}");
        }
        if let Some(v) = g.onboot {
            line += &format!(" onboot={v}");
        }
        if let Some(v) = g.kind {
            line += &format!(" type={}", v.as_str());
        }
        if let Some(v) = g.sockets {
            line += &format!(" sockets={v}");
        }
        if let Some(v) = g.balloon {
            line += &format!(" balloon={v}");
        }
        for o in &g.once {
            line += &format!(" once={}:{}", o.key, o.action.as_str());
            if let Some(node) = &o.node {
                line += &format!("@{node}");
            }
        }
        if let Some(v) = &g.tags {
            line += &format!(" tags={v:?}");
        }
        lines.push(line);
    }
    lines.join("\n")
}

#[test]
fn full_example_parses() {
    check(
        r#"{"version": 1,
 "guests": [{"vmid": 101, "state": "running", "cores": 2, "memory": 1024, "swap": 512,
             "description": "web frontend", "onboot": true, "tags": ["prod", "web"]},
            {"vmid": 102, "name": "db", "state": "stopped"},
            {"vmid": 100}]}"#,
        r#"100
101 state=running cores=2 memory=1024 swap=512 description="web frontend" onboot=true tags=["prod", "web"]
102 name="db" state=stopped"#,
    );
}

#[test]
fn top_level() {
    let cases: &[(&str, &str)] = &[
        (r#"{"guests": []}"#, "ok"),
        (r#"{"version": 1, "guests": []}"#, "ok"),
        (
            r#"{"version": 2, "guests": []}"#,
            "/srv/d.json:1:13: version: expected 1, the only schema version this agent reads, found 2",
        ),
        (
            r#"{"version": "1", "guests": []}"#,
            r#"/srv/d.json:1:13: version: expected 1, the only schema version this agent reads, found a string "1""#,
        ),
        (
            r#"{"version": 1.0, "guests": []}"#,
            "/srv/d.json:1:13: version: expected 1, the only schema version this agent reads, found 1.0",
        ),
        (
            r#"{"version": 1}"#,
            r#"/srv/d.json:1:1: guests: missing: add "guests": [...] with one object per managed guest (an empty list manages none)"#,
        ),
        (
            r#"{"guests": {}}"#,
            r#"/srv/d.json:1:12: guests: expected an array of guest objects like [{"vmid": 101, "state": "running"}], found an object"#,
        ),
        (
            r#"{"guests": null}"#,
            r#"/srv/d.json:1:12: guests: expected an array of guest objects like [{"vmid": 101, "state": "running"}], found null"#,
        ),
        (
            r#"[]"#,
            r#"/srv/d.json:1:1: expected an object like {"version": 1, "guests": [...]}, found an array"#,
        ),
        (
            r#"{"guests": [], "guest": []}"#,
            r#"/srv/d.json:1:16: unknown key "guest": did you mean "guests"?"#,
        ),
        (
            r#"{"guests": [], "Version": 1}"#,
            r#"/srv/d.json:1:16: unknown key "Version": did you mean "version"?"#,
        ),
        (
            r#"{"guests": [], "nodes": []}"#,
            r#"/srv/d.json:1:16: unknown key "nodes": the keys allowed here are version, guests"#,
        ),
        (
            r#"{"guests": [], "guests": []}"#,
            r#"/srv/d.json:1:16: duplicate key "guests" (first at line 1, column 2): keep only one"#,
        ),
        (
            r#"{"guests": [5]}"#,
            r#"/srv/d.json:1:13: guests[0]: expected a guest object like {"vmid": 101, "state": "running"}, found 5"#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn positions_on_multi_line_input() {
    // Columns count characters, not bytes: the "é" and "😀" before an error on the
    // same line are one column each (counting bytes would give 6:40).
    let input = r#"{
  "version": 1,
  "guests": [
    {"vmid": 101, "state": "running"},
    {"vmid": 102,
     "description": "é😀", "cores": 0,
     "tags": ["ok",
              "not ok"]},
    {
      "vmid": 101
    }
  ]
}"#;
    check(
        input,
        "/srv/d.json:6:36: guest 102: cores: expected an integer from 1 to 8192, found 0
/srv/d.json:8:15: guest 102: tags[1]: invalid tag \"not ok\": a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.': write each tag as its own string
/srv/d.json:10:15: guest 101: vmid: duplicate: guest 101 is already declared at guests[0] (line 4, column 14): keep one entry per guest",
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let input = r#"{"guests": [
 {"vmid": 99, "memory": 8, "colour": "red"},
 {"state": "up"},
 {"vmid": 103, "onboot": 1, "tags": ["Prod", "-x", 7]}
], "version": 3}"#;
    check(
        input,
        r#"/srv/d.json:2:11: guests[0]: vmid: expected an integer from 100 to 999999999, found 99
/srv/d.json:2:25: guests[0]: memory: expected an integer from 16 to 268435456 MiB, found 8
/srv/d.json:2:28: guests[0]: unknown key "colour": the keys allowed here are vmid, type, name, state, cores, sockets, memory, balloon, swap, description, onboot, tags, once
/srv/d.json:3:2: guests[1]: vmid: missing: add "vmid": <the guest's id> to this guest
/srv/d.json:3:12: guests[1]: state: expected "running" or "stopped", found a string "up"
/srv/d.json:4:26: guest 103: onboot: expected true or false, found 1
/srv/d.json:4:46: guest 103: tags[1]: invalid tag "-x": a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.'
/srv/d.json:4:52: guest 103: tags[2]: expected a tag string, found 7
/srv/d.json:5:15: version: expected 1, the only schema version this agent reads, found 3"#,
    );
}

#[test]
fn problems_are_capped_at_twenty() {
    let guests: Vec<String> = (0..25).map(|i| format!("{{\"vmid\": {i}}}")).collect();
    let input = format!("{{\"guests\": [\n{}\n]}}", guests.join(",\n"));
    let err = DesiredState::parse(&input, Path::new(FILE)).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21, "{text}");
    assert_eq!(
        lines[0],
        "/srv/d.json:2:10: guests[0]: vmid: expected an integer from 100 to 999999999, found 0"
    );
    assert_eq!(
        lines[19],
        "/srv/d.json:21:10: guests[19]: vmid: expected an integer from 100 to 999999999, found 19"
    );
    assert_eq!(
        lines[20],
        "/srv/d.json: 5 more problems not shown: fix these and check again"
    );
    let DesiredError::Invalid {
        problems, omitted, ..
    } = err
    else {
        panic!("not Invalid")
    };
    assert_eq!((problems.len(), omitted), (20, 5));
    assert_eq!(problems[0].guest.as_deref(), Some("guests[0]"));
    assert_eq!(problems[0].key.as_deref(), Some("vmid"));
}

#[test]
fn duplicate_vmids_name_both_places() {
    check(
        r#"{"guests": [{"vmid": 101}, {"vmid": 102}, {"vmid": 101}, {"vmid": 101}]}"#,
        "/srv/d.json:1:52: guest 101: vmid: duplicate: guest 101 is already declared at guests[0] (line 1, column 22): keep one entry per guest
/srv/d.json:1:67: guest 101: vmid: duplicate: guest 101 is already declared at guests[0] (line 1, column 22): keep one entry per guest",
    );
}

fn spec() -> GuestSpec {
    GuestSpec {
        vmid: Vmid::new(101).unwrap(),
        kind: None,
        sockets: None,
        balloon: None,
        name: Some("web".to_string()),
        state: Some(RunState::Running),
        cores: Some(2),
        memory: Some(1024),
        swap: Some(512),
        description: Some("web frontend".to_string()),
        onboot: Some(true),
        tags: Some(vec!["prod".to_string(), "web".to_string()]),
        once: Vec::new(),
    }
}

#[test]
fn fingerprint_is_stable_and_tracks_managed_fields() {
    let base = spec();
    // Pinned: the value may be stored, so it must not change between builds. The
    // expected values were computed independently (a few lines of Python over the
    // canonical rendering documented in `fingerprint`).
    assert_eq!(base.fingerprint(), 0x7372_ba7b_eeed_5a52);
    assert_eq!(
        GuestSpec::new(Vmid::new(101).unwrap()).fingerprint(),
        0x58c5_4a3a_5562_dedb
    );
    // Without a name, the value it always had.
    let unnamed = GuestSpec {
        name: None,
        ..base.clone()
    };
    assert_eq!(unnamed.fingerprint(), 0xc02c_a27c_42c9_06de);
    // The name guards against a reused vmid, so changing it changes the spec.
    let renamed = GuestSpec {
        name: Some("web2".into()),
        ..base.clone()
    };
    assert_ne!(renamed.fingerprint(), base.fingerprint());
    let variants = [
        GuestSpec {
            vmid: Vmid::new(102).unwrap(),
            ..base.clone()
        },
        GuestSpec {
            state: Some(RunState::Stopped),
            ..base.clone()
        },
        GuestSpec {
            state: None,
            ..base.clone()
        },
        GuestSpec {
            cores: Some(3),
            ..base.clone()
        },
        GuestSpec {
            memory: Some(2048),
            ..base.clone()
        },
        GuestSpec {
            swap: None,
            ..base.clone()
        },
        GuestSpec {
            description: Some(String::new()),
            ..base.clone()
        },
        GuestSpec {
            description: None,
            ..base.clone()
        },
        GuestSpec {
            onboot: Some(false),
            ..base.clone()
        },
        GuestSpec {
            tags: Some(vec![]),
            ..base.clone()
        },
        GuestSpec {
            tags: None,
            ..base.clone()
        },
        GuestSpec {
            tags: Some(vec!["prod,web".to_string()]),
            ..base.clone()
        },
        GuestSpec {
            once: vec![OneShot {
                key: "k".into(),
                action: OneShotAction::Start,
                node: None,
            }],
            ..base.clone()
        },
        // The same key moved to a node: another spec (a queued key stops).
        GuestSpec {
            once: vec![OneShot {
                key: "k".into(),
                action: OneShotAction::Start,
                node: Some("pve2".into()),
            }],
            ..base.clone()
        },
    ];
    let mut seen = vec![base.fingerprint()];
    for v in &variants {
        let f = v.fingerprint();
        assert!(!seen.contains(&f), "{v:?} collides");
        seen.push(f);
    }
}

#[test]
fn fnv_matches_the_reference_vectors() {
    let mut h = Fnv::new();
    assert_eq!(h.0, 0xcbf2_9ce4_8422_2325);
    h.write(b"a");
    assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn providers() {
    assert_eq!(EmptyProvider.name(), "none");
    assert_eq!(EmptyProvider.load().unwrap(), DesiredState::default());
    let missing = FileProvider {
        path: PathBuf::from("/nonexistent/felhom/desired.json"),
    };
    assert_eq!(missing.name(), "file /nonexistent/felhom/desired.json");
    let err = missing.load().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read desired state file /nonexistent/felhom/desired.json: "),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(err.path(), Path::new("/nonexistent/felhom/desired.json"));
}

#[test]
fn invalid_utf8_is_located() {
    let err =
        crate::json::diag::decode(b"{\"guests\": [],\n \"x\": \"\xff\"}".to_vec()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "2:8: the file is not valid UTF-8: save it as UTF-8 text"
    );
}
