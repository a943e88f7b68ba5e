//! The man page, `--help`, the README and the config parser agree on the commands and
//! the config keys; every command answers `--help`; the bash completion completes.

use super::rig::{fast_sim, guest, Rig};
use felhom_agent::manual::{self, COMMANDS, SIM_OPTIONS};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_felhom-agent");

fn bin(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lines of `text` after the line starting with `header`, up to the first empty one.
fn block<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The first column of the README table under `## heading`, without its backticks.
fn readme_table(readme: &str, heading: &str) -> Vec<String> {
    readme
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_string())
        .collect()
}

/// The names the man page gives in one section: `.SS "name ..."` or `.B "name"`.
fn man_names(page: &str, section: &str, macro_: &str) -> Vec<String> {
    page.lines()
        .skip_while(|l| *l != format!(".SH {section}"))
        .skip(1)
        .take_while(|l| !l.starts_with(".SH "))
        .filter_map(|l| l.strip_prefix(&format!("{macro_} \"")))
        .map(|l| l.split(['"', ' ']).next().unwrap().replace("\\-", "-"))
        .collect()
}

#[test]
fn commands_and_config_keys_agree_across_help_man_readme_and_the_parser() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let help = stdout(&bin(&["--help"]));
    let page = stdout(&bin(&["--generate", "man"]));

    let documented: Vec<String> = COMMANDS.iter().map(|c| c.name.to_string()).collect();
    let in_help: Vec<String> = block(&help, "commands:")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(in_help, documented, "--help");
    assert_eq!(man_names(&page, "COMMANDS", ".SS"), documented, "man page");
    assert_eq!(readme_table(&readme, "## Commands"), documented, "README");

    let keys: Vec<String> = felhom_agent::config::KEYS
        .iter()
        .map(|k| k.to_string())
        .collect();
    let in_help: Vec<String> = block(&help, "config keys")
        .join(" ")
        .split(',')
        .map(|k| k.trim().to_string())
        .collect();
    assert_eq!(in_help, keys, "--help");
    assert_eq!(man_names(&page, "CONFIGURATION", ".B"), keys, "man page");
    assert_eq!(readme_table(&readme, "## Config reference"), keys, "README");
    let documented: Vec<String> = manual::CONFIG_KEYS
        .iter()
        .map(|k| k.key.to_string())
        .collect();
    assert_eq!(documented, keys, "manual");
}

#[test]
fn every_command_answers_help_with_its_options() {
    for c in COMMANDS {
        let out = bin(&[c.name, "--help"]);
        assert!(out.status.success(), "{} --help", c.name);
        let text = stdout(&out);
        let options: Vec<&str> = if c.name == "sim" {
            // Its own help, which takes --help for granted.
            SIM_OPTIONS
                .iter()
                .copied()
                .filter(|o| *o != "--help")
                .collect()
        } else {
            c.options.iter().map(|(name, _)| *name).collect()
        };
        for o in options {
            assert!(text.contains(o), "{} --help lacks {o}:\n{text}", c.name);
        }
        assert_eq!(stdout(&bin(&["help", c.name])), text, "help {}", c.name);
    }
    let out = bin(&["help", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}

/// What the completion offers for `words`, the last being the word under the cursor.
fn complete(words: &[&str]) -> Vec<String> {
    let script = stdout(&bin(&["--generate", "complete-bash"]));
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{script}\nCOMP_WORDS=('{BIN}' {})\nCOMP_CWORD={}\n_felhom_agent\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len()
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_options_and_the_desired_vmids() {
    assert_eq!(complete(&["ex"]), ["export"]);
    assert_eq!(complete(&["--gen"]), ["--generate"]);
    assert_eq!(complete(&["export", "--"]).len(), 7);
    assert_eq!(complete(&["journal", "--t"]), ["--tail"]);
    assert_eq!(complete(&["plan", "--log-level", "w"]), ["warn"]);
    assert_eq!(complete(&["--generate", "c"]), ["complete-bash"]);
    assert_eq!(complete(&["help", "st"]), ["status"]);
    assert_eq!(complete(&["sim", "--tls-c"]), ["--tls-cert"]);

    let rig = Rig::new(
        "complete",
        fast_sim(),
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101}, {"vmid": 102}, {"vmid": 250}]}"#,
        serde_json::json!({}),
    );
    let config = rig.config_path.to_str().unwrap();
    assert_eq!(
        complete(&["export", "--config", config, "--vmid", "10"]),
        ["101", "102"]
    );
    assert_eq!(
        complete(&["export", "--config", config, "--vmid", "101,2"]),
        ["101,250"]
    );
    assert!(rig.sim.requests().is_empty(), "completion reads files only");
}

#[test]
fn the_man_page_renders_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("SKIPPED the man page render check: man is not installed");
        return;
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("felhom-agent.8");
    std::fs::write(&path, manual::man_page()).unwrap();
    // As lintian runs it.
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
        .arg(&path)
        .env("LC_ALL", "C.UTF-8")
        .env("MANROFFSEQ", "")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
}
