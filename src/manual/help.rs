//! `--help` text: the command list, and one page per command.

use super::{option, plain, Command, COMMANDS, EXIT_CODES, TOP_OPTIONS};
use std::fmt::Write as _;

const WIDTH: usize = 80;

/// `felhom-agent --help`. `dev` says whether this build has the development commands.
pub fn usage(dev: bool) -> String {
    let mut out = format!(
        "felhom-agent: {}\n\n\
         usage: felhom-agent <command> [options]\n       \
         felhom-agent <command> --help\n\ncommands:\n",
        super::ABOUT
    );
    for c in COMMANDS {
        let summary = if c.dev_only && !dev {
            "(not in this build: development builds only)".to_string()
        } else {
            plain(c.summary)
        };
        let _ = writeln!(out, "  {:<9} {summary}", c.name);
    }
    out.push_str("\noptions:\n");
    let rows: Vec<(String, String)> = TOP_OPTIONS
        .iter()
        .map(|o| (label(o.name, o.value), plain(o.help)))
        .collect();
    table(&mut out, &rows);
    out.push_str("\nconfig keys (`man 8 felhom-agent` says what each means):\n");
    // The parser's list, which tests hold equal to CONFIG_KEYS (whose meanings only
    // the man page needs).
    wrap(&mut out, &crate::config::KEYS.join(", "), 2);
    out.push_str("\nexit codes:\n");
    let codes: Vec<String> = EXIT_CODES
        .iter()
        .map(|(n, short)| format!("{n} {short}"))
        .collect();
    wrap(&mut out, &codes.join(", "), 2);
    out.replace('`', "")
}

/// `felhom-agent <command> --help`.
pub fn command_help(c: &Command) -> String {
    let mut out = String::new();
    wrap(
        &mut out,
        &format!("felhom-agent {}: {}", c.name, plain(c.summary)),
        0,
    );
    out.push('\n');
    let args = if c.args.is_empty() {
        String::new()
    } else {
        format!(" {}", c.args)
    };
    let _ = writeln!(out, "usage: felhom-agent {}{args} [options]\n", c.name);
    for para in c.text.split("\n\n") {
        wrap(&mut out, &plain(para), 0);
        out.push('\n');
    }
    out.push_str("options:\n");
    let rows: Vec<(String, String)> = c
        .options
        .iter()
        .map(|(name, here)| {
            let o = option(name).expect("every command option is in OPTIONS");
            let help = if here.is_empty() { o.help } else { here };
            (label(o.name, o.value), plain(help))
        })
        .collect();
    table(&mut out, &rows);
    out
}

fn label(name: &str, value: &str) -> String {
    if value.is_empty() {
        name.to_string()
    } else {
        format!("{name} {value}")
    }
}

/// Two columns: the label, then its text wrapped beside it.
fn table(out: &mut String, rows: &[(String, String)]) {
    let col = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 4;
    for (label, text) in rows {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.is_empty() && col + line.len() + 1 + word.len() > WIDTH {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
        let _ = writeln!(out, "  {label:<width$}{}", lines[0], width = col - 2);
        for l in &lines[1..] {
            let _ = writeln!(out, "{:col$}{l}", "");
        }
    }
}

/// `text` wrapped at [`WIDTH`], each line indented by `indent`.
fn wrap(out: &mut String, text: &str, indent: usize) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{:indent$}{line}", "");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{:indent$}{line}", "");
    }
}
