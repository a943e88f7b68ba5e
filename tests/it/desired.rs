//! Loading real desired-state files through the file provider, as the run loop
//! does on every reload.

use super::config::TempDir;
use felhom_agent::desired::{DesiredError, DesiredState, FileProvider, Provider, RunState};
use felhom_agent::pve::Vmid;
use std::fs;

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

#[test]
fn a_file_is_read_again_on_every_load() {
    let dir = TempDir::new("desired-reload");
    let path = dir.write(
        "desired.json",
        r#"{"version": 1, "guests": [
  {"vmid": 101, "name": "web", "state": "running", "cores": 2, "memory": 1024,
   "swap": 512, "description": "web frontend", "onboot": true, "tags": ["prod", "web"]},
  {"vmid": 102, "state": "stopped"}
]}"#,
        0o644,
    );
    let provider = FileProvider { path: path.clone() };
    let first = provider.load().unwrap();
    let web = &first.guests[&vmid(101)];
    assert_eq!(web.state, Some(RunState::Running));
    assert_eq!(web.memory, Some(1024));
    assert_eq!(
        web.tags.as_deref(),
        Some(&["prod".to_string(), "web".to_string()][..])
    );
    assert_eq!(first.guests[&vmid(102)].cores, None);

    // An edit that changes one guest changes only that guest's fingerprint.
    fs::write(
        &path,
        r#"{"guests": [
  {"vmid": 101, "name": "web", "state": "running", "cores": 4, "memory": 1024,
   "swap": 512, "description": "web frontend", "onboot": true, "tags": ["prod", "web"]},
  {"vmid": 102, "state": "stopped"}
]}"#,
    )
    .unwrap();
    let second = provider.load().unwrap();
    assert_eq!(second.guests[&vmid(101)].cores, Some(4));
    assert_ne!(
        first.guests[&vmid(101)].fingerprint(),
        second.guests[&vmid(101)].fingerprint()
    );
    assert_eq!(
        first.guests[&vmid(102)].fingerprint(),
        second.guests[&vmid(102)].fingerprint()
    );
    assert_eq!(DesiredState::load(&path).unwrap(), second);
}

#[test]
fn a_bad_edit_is_refused_whole_with_every_problem() {
    let dir = TempDir::new("desired-bad");
    let path = dir.write(
        "desired.json",
        r#"{"guests": [
  {"vmid": 101, "state": "running", "memory": 8},
  {"vmid": 102, "tags": ["ok", "not;ok"]},
  {"vmid": 101, "state": "stopped"}
]}"#,
        0o644,
    );
    let err = FileProvider { path: path.clone() }.load().unwrap_err();
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}:2:47: guest 101: memory: expected an integer from 16 to 268435456 MiB, found 8\n\
             {p}:3:32: guest 102: tags[1]: invalid tag \"not;ok\": a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.': write each tag as its own string\n\
             {p}:4:12: guest 101: vmid: duplicate: guest 101 is already declared at guests[0] (line 2, column 12): keep one entry per guest"
        )
    );
    let DesiredError::Invalid {
        problems, omitted, ..
    } = err
    else {
        panic!("not Invalid")
    };
    assert_eq!((problems.len(), omitted), (3, 0));
    assert_eq!(problems[1].guest.as_deref(), Some("guest 102"));
}

#[test]
fn unreadable_files_are_read_errors() {
    let dir = TempDir::new("desired-unreadable");
    // A directory where the file should be.
    let err = DesiredState::load(dir.path()).unwrap_err();
    assert!(matches!(err, DesiredError::Read { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!(
        "cannot read desired state file {}: ",
        dir.path().display()
    )));

    let path = dir.write("desired.json", b"{\"guests\": []}\n\xff", 0o644);
    let err = DesiredState::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:1: the file is not valid UTF-8: save it as UTF-8 text",
            path.display()
        )
    );
}
