//! The manual against the code it describes: config keys, what a reload changes, the
//! desired-state fields, exit codes; and the rendered forms against each other.

use super::*;
use crate::exit::ExitCode;
use std::path::Path;

#[test]
fn config_keys_are_the_parsers_keys_in_order() {
    let documented: Vec<&str> = CONFIG_KEYS.iter().map(|k| k.key).collect();
    assert_eq!(documented, crate::config::KEYS);
}

#[test]
fn restart_keys_are_exactly_the_fixed_settings() {
    let config = crate::config::Config::parse(
        r#"{"token_id": "agent@pve!reconciler", "token_secret_file": "t", "node": "pve1"}"#,
        Path::new("/etc/felhom-agent/config.json"),
    )
    .unwrap();
    let fixed = serde_json::to_value(&config.fixed).unwrap();
    let mut fixed_keys: Vec<&str> = fixed
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fixed_keys.sort_unstable();
    let mut restart: Vec<&str> = CONFIG_KEYS
        .iter()
        .filter(|k| k.restart)
        .map(|k| k.key)
        .collect();
    restart.sort_unstable();
    assert_eq!(restart, fixed_keys);
    // And the documented defaults of the fixed settings are the parser's.
    for k in CONFIG_KEYS {
        let (Some(value), false) = (fixed.get(k.key), k.key == "node" || k.default == "required")
        else {
            continue;
        };
        let shown = match value {
            serde_json::Value::String(s) => format!("`{s}`"),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        assert_eq!(shown, k.default, "default of {}", k.key);
    }
}

#[test]
fn desired_fields_are_the_files_fields_in_order() {
    let documented: Vec<&str> = DESIRED_FIELDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(documented, crate::desired::FIELDS);
}

#[test]
fn exit_codes_are_the_binarys() {
    // A match without a wildcard: a new exit code fails to compile here.
    let described = |c: ExitCode| match c {
        ExitCode::Ok
        | ExitCode::Failure
        | ExitCode::Usage
        | ExitCode::JournalCorrupt
        | ExitCode::JournalSync
        | ExitCode::Internal => c.code(),
    };
    let all = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::JournalCorrupt,
        ExitCode::JournalSync,
        ExitCode::Internal,
    ];
    let codes: Vec<i32> = all.into_iter().map(described).collect();
    let documented: Vec<i32> = EXIT_CODES.iter().map(|(n, _)| *n).collect();
    assert_eq!(documented, codes);
    assert_eq!(EXIT_MEANINGS.len(), EXIT_CODES.len());
}

#[test]
fn every_command_option_is_documented_and_text_is_ascii() {
    for c in COMMANDS {
        for (name, _) in c.options {
            assert!(
                option(name).is_some(),
                "{}: {name} is not in OPTIONS",
                c.name
            );
        }
        assert!(c.options.iter().any(|(n, _)| *n == "--help"), "{}", c.name);
        // `--help` shows it as one paragraph; DETAILS holds more.
        assert!(!c.text.contains("\n\n"), "{}", c.name);
    }
    for (name, _) in DETAILS {
        assert!(command(name).is_some(), "DETAILS names {name}");
    }
    for o in OPTIONS {
        assert!(
            COMMANDS
                .iter()
                .any(|c| c.options.iter().any(|(n, _)| *n == o.name)),
            "{} is taken by no command",
            o.name
        );
    }
    for page in [man_page(), completion(), usage(true)] {
        if let Some(c) = page.chars().find(|c| !c.is_ascii()) {
            panic!("{c:?} is not ASCII");
        }
    }
}

#[test]
fn the_man_page_has_every_section_command_and_key() {
    let page = man_page();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPTIONS",
        "CONFIGURATION",
        "\"DESIRED STATE\"",
        "SIGNALS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "\"SEE ALSO\"",
    ] {
        assert!(page.contains(&format!("\n.SH {section}\n")), "{section}");
    }
    for c in COMMANDS {
        assert!(page.contains(&format!("\n.SS \"{}", c.name)), "{}", c.name);
    }
    for k in CONFIG_KEYS {
        assert!(page.contains(&format!("\n.B \"{}\"\n", k.key.replace('-', "\\-"))));
    }
    // No text line starts with a control character, and every code span is closed.
    for line in page.lines().filter(|l| !l.starts_with('.')) {
        assert!(!line.starts_with('\''), "{line}");
        assert_eq!(
            line.matches("\\fB").count() + line.matches("\\fI").count(),
            line.matches("\\fR").count(),
            "{line}"
        );
    }
}

#[test]
fn every_command_has_a_help_page_with_its_options() {
    for c in COMMANDS {
        let help = command_help(c);
        assert!(help.starts_with(&format!("felhom-agent {}: ", c.name)));
        for (name, _) in c.options {
            assert!(
                help.contains(&format!("\n  {name}")),
                "{}: {name}\n{help}",
                c.name
            );
        }
        assert!(help.lines().all(|l| l.len() <= 80), "{help}");
    }
    let node = usage(false);
    assert!(
        node.contains("  sim       (development builds only)"),
        "{node}"
    );
    let dev = usage(true);
    assert!(dev.contains("  sim       serve a simulated"), "{dev}");
    for top in [node, dev] {
        assert!(top.lines().all(|l| l.len() <= 80), "{top}");
    }
}
