//! Per-field checks of a guest entry: every key, every bound just inside and just
//! outside, every type mismatch.

use super::tests::check;

/// One guest, `{"vmid": 101, <fields>}`, on one line. The fields start at column 27.
fn guest(fields: &str) -> String {
    format!(r#"{{"guests": [{{"vmid": 101, {fields}}}]}}"#)
}

/// Checks a table of `(fields, expected)` for [`guest`].
fn table(cases: &[(&str, &str)]) {
    for (fields, expected) in cases {
        check(&guest(fields), &expand(expected));
    }
}

/// `expected` is either the parsed guest's rendering, or an error on line 1 written
/// from the column on (`36: guest 101: ...`), to which the file and line are added.
fn expand(expected: &str) -> String {
    match expected.split_once(':') {
        Some((col, _)) if col.bytes().all(|b| b.is_ascii_digit()) => {
            format!("/srv/d.json:1:{expected}")
        }
        _ => expected.to_string(),
    }
}

#[test]
fn vmid() {
    let cases: &[(&str, &str)] = &[
        (r#"{"vmid": 100}"#, "100"),
        (r#"{"vmid": 999999999}"#, "999999999"),
        (
            r#"{"vmid": 99}"#,
            "22: guests[0]: vmid: expected an integer from 100 to 999999999, found 99",
        ),
        (
            r#"{"vmid": 1000000000}"#,
            "22: guests[0]: vmid: expected an integer from 100 to 999999999, found 1000000000",
        ),
        (
            r#"{"vmid": "101"}"#,
            r#"22: guests[0]: vmid: expected an integer from 100 to 999999999, found a string "101": write the number without quotes"#,
        ),
        (
            r#"{"vmid": 101.0}"#,
            "22: guests[0]: vmid: expected an integer from 100 to 999999999, found 101.0",
        ),
        (
            r#"{"vmid": -101}"#,
            "22: guests[0]: vmid: expected an integer from 100 to 999999999, found -101",
        ),
        (
            r#"{"vmid": null}"#,
            "22: guests[0]: vmid: expected an integer from 100 to 999999999, found null",
        ),
        (
            r#"{"state": "running"}"#,
            r#"13: guests[0]: vmid: missing: add "vmid": <the guest's id> to this guest"#,
        ),
        (
            r#"{"vmid": 101, "vmid": 102}"#,
            r#"27: guest 101: duplicate key "vmid" (first at line 1, column 14): keep only one"#,
        ),
    ];
    for (entry, expected) in cases {
        check(&format!(r#"{{"guests": [{entry}]}}"#), &expand(expected));
    }
}

#[test]
fn name_and_state() {
    table(&[
        (r#""name": "web 1""#, r#"101 name="web 1""#),
        (r#""name": """#, r#"101 name="""#),
        (
            r#""name": 5"#,
            "35: guest 101: name: expected a string, found 5",
        ),
        (r#""state": "running""#, "101 state=running"),
        (r#""state": "stopped""#, "101 state=stopped"),
        (
            r#""state": "Running""#,
            r#"36: guest 101: state: expected "running" or "stopped", found a string "Running""#,
        ),
        (
            r#""state": true"#,
            r#"36: guest 101: state: expected "running" or "stopped", found true"#,
        ),
        (
            r#""state": null"#,
            r#"36: guest 101: state: expected "running" or "stopped", found null"#,
        ),
    ]);
}

#[test]
fn cores() {
    table(&[
        (r#""cores": 1"#, "101 cores=1"),
        (r#""cores": 8192"#, "101 cores=8192"),
        (
            r#""cores": 0"#,
            "36: guest 101: cores: expected an integer from 1 to 8192, found 0",
        ),
        (
            r#""cores": 8193"#,
            "36: guest 101: cores: expected an integer from 1 to 8192, found 8193",
        ),
        (
            r#""cores": "2""#,
            r#"36: guest 101: cores: expected an integer from 1 to 8192, found a string "2": write the number without quotes"#,
        ),
        (
            r#""cores": 2.5"#,
            "36: guest 101: cores: expected an integer from 1 to 8192, found 2.5",
        ),
        (
            r#""cores": [2]"#,
            "36: guest 101: cores: expected an integer from 1 to 8192, found an array",
        ),
    ]);
}

#[test]
fn memory_and_swap() {
    table(&[
        (r#""memory": 16"#, "101 memory=16"),
        (r#""memory": 268435456"#, "101 memory=268435456"),
        (
            r#""memory": 15"#,
            "37: guest 101: memory: expected an integer from 16 to 268435456 MiB, found 15",
        ),
        (
            r#""memory": 268435457"#,
            "37: guest 101: memory: expected an integer from 16 to 268435456 MiB, found 268435457",
        ),
        (
            r#""memory": "1G""#,
            r#"37: guest 101: memory: expected an integer from 16 to 268435456 MiB, found a string "1G""#,
        ),
        (
            r#""memory": 1e3"#,
            "37: guest 101: memory: expected an integer from 16 to 268435456 MiB, found 1e3",
        ),
        (r#""swap": 0"#, "101 swap=0"),
        (r#""swap": 268435456"#, "101 swap=268435456"),
        (
            r#""swap": 268435457"#,
            "35: guest 101: swap: expected an integer from 0 to 268435456 MiB, found 268435457",
        ),
        (
            r#""swap": -1"#,
            "35: guest 101: swap: expected an integer from 0 to 268435456 MiB, found -1",
        ),
        (
            r#""swap": false"#,
            "35: guest 101: swap: expected an integer from 0 to 268435456 MiB, found false",
        ),
    ]);
}

#[test]
fn description() {
    let max = format!(r#""description": "{}""#, "d".repeat(8192));
    let over = format!(r#""description": "{}""#, "d".repeat(8193));
    // 4097 two-byte characters: 8194 bytes, though only 4097 characters.
    let wide = format!(r#""description": "{}""#, "é".repeat(4097));
    check(
        &guest(&max),
        &format!("101 description={:?}", "d".repeat(8192)),
    );
    table(&[
        (r#""description": """#, r#"101 description="""#),
        (
            r#""description": "two\nlines""#,
            r#"101 description="two\nlines""#,
        ),
        (
            &over,
            "42: guest 101: description: expected at most 8192 bytes, found 8193 bytes: shorten it",
        ),
        (
            &wide,
            "42: guest 101: description: expected at most 8192 bytes, found 8194 bytes: shorten it",
        ),
        (
            r#""description": ["a"]"#,
            "42: guest 101: description: expected a string, found an array",
        ),
    ]);
}

#[test]
fn onboot() {
    table(&[
        (r#""onboot": true"#, "101 onboot=true"),
        (r#""onboot": false"#, "101 onboot=false"),
        (
            r#""onboot": 1"#,
            "37: guest 101: onboot: expected true or false, found 1",
        ),
        (
            r#""onboot": "true""#,
            r#"37: guest 101: onboot: expected true or false, found a string "true""#,
        ),
    ]);
}

#[test]
fn tags() {
    const RULE: &str = "a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.'";
    let one_string = r#"35: guest 101: tags: expected an array of strings like ["prod", "web"], found a string "prod;web": write each tag as its own string"#;
    let with_space = format!(
        r#"36: guest 101: tags[0]: invalid tag "prod web": {RULE}: write each tag as its own string"#
    );
    let leading_dash = format!(r#"36: guest 101: tags[0]: invalid tag "-x": {RULE}"#);
    let empty = format!(r#"36: guest 101: tags[0]: invalid tag "": {RULE}"#);
    let two_bad = format!(
        "36: guest 101: tags[0]: invalid tag \"a/b\": {RULE}\n/srv/d.json:1:49: guest 101: tags[2]: invalid tag \"ü\": {RULE}"
    );
    table(&[
        (r#""tags": []"#, "101 tags=[]"),
        (
            r#""tags": ["prod", "Web", "a_b-c+d.e", "_x", "9", "prod"]"#,
            r#"101 tags=["prod", "Web", "a_b-c+d.e", "_x", "9", "prod"]"#,
        ),
        (r#""tags": "prod;web""#, one_string),
        (r#""tags": ["prod web"]"#, &with_space),
        (r#""tags": ["-x"]"#, &leading_dash),
        (r#""tags": [""]"#, &empty),
        (r#""tags": ["a/b", "ok", "ü"]"#, &two_bad),
        (
            r#""tags": [5]"#,
            "36: guest 101: tags[0]: expected a tag string, found 5",
        ),
        (
            r#""tags": null"#,
            r#"35: guest 101: tags: expected an array of strings like ["prod", "web"], found null"#,
        ),
    ]);
}

#[test]
fn unknown_and_duplicate_keys() {
    table(&[
        (
            r#""memroy": 512"#,
            r#"27: guest 101: unknown key "memroy": did you mean "memory"?"#,
        ),
        (
            r#""Cores": 2"#,
            r#"27: guest 101: unknown key "Cores": did you mean "cores"?"#,
        ),
        (
            r#""hostname": "web""#,
            r#"27: guest 101: unknown key "hostname": the keys allowed here are vmid, type, name, state, cores, sockets, memory, balloon, swap, description, onboot, tags, once"#,
        ),
        (
            r#""cores": 1, "cores": 2"#,
            r#"39: guest 101: duplicate key "cores" (first at line 1, column 27): keep only one"#,
        ),
    ]);
}

#[test]
fn type_and_the_fields_of_virtual_machines() {
    table(&[
        (r#""type": "qemu", "sockets": 2, "balloon": 0"#, "101 type=qemu sockets=2 balloon=0"),
        (r#""type": "lxc", "swap": 0"#, "101 swap=0 type=lxc"),
        (
            r#""type": "vm""#,
            "35: guest 101: type: expected \"lxc\" or \"qemu\", found a string \"vm\"",
        ),
        (
            r#""type": "lxc", "sockets": 2"#,
            "53: guest 101: sockets: a container has no sockets: remove it from this guest, or check its vmid and type",
        ),
        (
            r#""type": "qemu", "swap": 512"#,
            "51: guest 101: swap: a virtual machine has no swap: remove it from this guest, or check its vmid and type",
        ),
    ]);
}

#[test]
fn once() {
    table(&[
        (
            r#""once": [{"key": "maint-1", "action": "shutdown"}, {"key": "a.b:c_d", "action": "start"}]"#,
            "101 once=maint-1:shutdown once=a.b:c_d:start",
        ),
        (r#""once": []"#, "101"),
        (
            r#""once": [{"key": "k", "action": "start", "node": "pve-2"}]"#,
            "101 once=k:start@pve-2",
        ),
        (
            r#""once": [{"key": "k", "action": "start", "node": "pve_2"}]"#,
            "76: guest 101: once[0].node: invalid node name \"pve_2\": give the name of the node whose agent carries the key out, as the Proxmox GUI shows it",
        ),
        (
            r#""once": {"key": "k", "action": "start"}"#,
            "35: guest 101: once: expected an array like [{\"key\": \"maintenance-2026-12\", \"action\": \"shutdown\"}], found an object",
        ),
        (
            r#""once": [{"key": "k 1", "action": "start"}]"#,
            "44: guest 101: once[0].key: invalid key \"k 1\": use 1 to 64 letters, digits and . _ - :",
        ),
        (
            r#""once": [{"key": "k", "action": "reboot"}]"#,
            "59: guest 101: once[0].action: expected \"start\", \"shutdown\" or \"stop\", found a string \"reboot\"",
        ),
        (
            r#""once": [{"key": "k"}]"#,
            "36: guest 101: once[0]: missing \"action\": each entry needs a key and an action, like [{\"key\": \"maintenance-2026-12\", \"action\": \"shutdown\"}]",
        ),
        (
            r#""once": [{"key": "k", "action": "start"}, {"key": "k", "action": "stop"}]"#,
            "69: guest 101: once[1]: key \"k\" is already used for start: a key names one action; use a new key for stop",
        ),
    ]);
}
