//! `--help` text: the command list, and one page per command.

use super::{option, Command, Opt, COMMANDS, EXIT_CODES, TOP_OPTIONS};
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
            "(development builds only)"
        } else {
            c.summary
        };
        let _ = writeln!(out, "  {:<9} {summary}", c.name);
    }
    out.push_str("\noptions:\n");
    options(&mut out, TOP_OPTIONS.iter().map(|o| (o, "")));
    out.push_str("\nconfig keys (man 8 felhom-agent):\n");
    // The parser's list, which tests hold equal to CONFIG_KEYS (whose meanings only
    // the man page needs).
    wrap(&mut out, &crate::config::KEYS.join(", "), "  ", 2);
    out.push_str("\nexit codes:\n");
    let codes: Vec<String> = EXIT_CODES
        .iter()
        .map(|(n, short)| format!("{n} {short}"))
        .collect();
    wrap(&mut out, &codes.join(", "), "  ", 2);
    out.replace('`', "")
}

/// `felhom-agent <command> --help`.
pub fn command_help(c: &Command) -> String {
    let mut out = String::new();
    wrap(
        &mut out,
        &format!("felhom-agent {}: {}", c.name, c.summary),
        "",
        0,
    );
    let args = if c.args.is_empty() { "" } else { " " };
    let _ = writeln!(
        out,
        "\nusage: felhom-agent {}{args}{} [options]\n",
        c.name, c.args
    );
    wrap(&mut out, c.text, "", 0);
    out.push_str("\noptions:\n");
    options(
        &mut out,
        c.options
            .iter()
            .map(|(name, here)| (option(name).expect("in OPTIONS"), *here)),
    );
    out.replace('`', "")
}

/// One option per entry, its help beside it: `here`, or the option's own when empty.
fn options<'a>(out: &mut String, rows: impl Iterator<Item = (&'a Opt, &'a str)>) {
    for (o, here) in rows {
        let label = format!("  {} {}", o.name, o.value);
        let help = if here.is_empty() { o.help } else { here };
        wrap(out, help, &format!("{:<21}", label.trim_end()), 21);
    }
}

/// `text` wrapped at [`WIDTH`], without code markers: the first line after `first`,
/// the others indented by `indent`.
fn wrap(out: &mut String, text: &str, first: &str, indent: usize) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let word = &word.replace('`', "");
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}
