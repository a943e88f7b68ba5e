//! Tidy checks on the source tree, in the spirit of rust-analyzer's `tidy.rs`: the repo
//! stands alone (no path of a build machine, no reference to a file outside it), every
//! module says what it is for, no module imports one that imports it back, and
//! ARCHITECTURE.md's code map names every module once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (relative to the repo), skipping build output and git.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "target" || name == ".git" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn text_files() -> Vec<(String, String)> {
    let mut all = Vec::new();
    files(&root(), &mut all);
    all.into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string();
            Some((rel, text))
        })
        .collect()
}

#[test]
fn the_repo_stands_alone() {
    // Built from pieces so that this file does not match itself.
    let machine = ["/wo", "rk/"].concat();
    let farm = ["/fa", "rm/"].concat();
    let outside = ["../sha", "red/"].concat();
    let notes = ["pve-api", ".md"].concat();
    let notes_qemu = ["pve-api-qemu", ".md"].concat();
    let mut found = Vec::new();
    for (file, text) in text_files() {
        for (n, line) in text.lines().enumerate() {
            for bad in [&machine, &farm, &outside, &notes, &notes_qemu] {
                if line.contains(bad.as_str()) {
                    found.push(format!("{file}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "paths of a build machine or files outside the repo:\n{}",
        found.join("\n")
    );
}

/// The Rust files under src, by module path (`engine::observe`, `lib` for the root).
fn modules() -> BTreeMap<String, String> {
    let mut all = Vec::new();
    files(&root().join("src"), &mut all);
    all.into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let rel = p
                .strip_prefix(root().join("src"))
                .unwrap()
                .with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            (parts.join("::"), std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn every_module_opens_with_its_purpose() {
    let missing: Vec<String> = modules()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        missing.is_empty(),
        "modules without an opening //! comment: {missing:?}"
    );
}

/// The code of a file without its comments (good enough for paths: no block comments
/// are used, and a `//` inside a string literal only hides the rest of that line).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| !l.trim().is_empty())
}

/// `crate::a::b` paths named in a file's code (use lines and inline paths).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let path: Vec<String> = tail
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect();
            out.push(path);
            rest = &tail[1..];
        }
    }
    out
}

/// Finds a cycle in `graph`, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules();
    // Between the crate's top-level modules, from every `crate::` path.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Between the files of one directory module, from their `super::` and
    // `crate::<dir>::` paths.
    let mut inner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &mods {
        let parts: Vec<&str> = module.split("::").collect();
        let from_top = parts[0].to_string();
        // Unit tests may reach anywhere; they are not part of the layering.
        if parts.last().is_some_and(|p| p.starts_with("tests")) || module == "lib" {
            continue;
        }
        for path in crate_paths(text) {
            let Some(to) = path.first() else { continue };
            if *to != from_top && mods.contains_key(to) {
                top.entry(from_top.clone()).or_default().insert(to.clone());
            }
            if *to == from_top && parts.len() == 2 && path.len() > 1 {
                let sibling = format!("{}::{}", to, path[1]);
                if mods.contains_key(&sibling) && sibling != *module {
                    inner.entry(module.clone()).or_default().insert(sibling);
                }
            }
        }
        if parts.len() == 2 {
            for line in code_lines(text).filter(|l| l.trim_start().starts_with("use super::")) {
                let list = line.trim_start()["use super::".len()..].trim_end_matches(';');
                let names: Vec<&str> = if let Some(inner_list) = list.strip_prefix('{') {
                    inner_list
                        .trim_end_matches('}')
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect()
                } else {
                    vec![list.split("::").next().unwrap_or("")]
                };
                for name in names {
                    let sibling = format!("{}::{}", parts[0], name.trim());
                    if mods.contains_key(&sibling) && sibling != *module {
                        inner.entry(module.clone()).or_default().insert(sibling);
                    }
                }
            }
        }
    }
    assert_eq!(cycle(&top), None, "top-level modules import each other");
    assert_eq!(cycle(&inner), None, "files of one module import each other");
}

#[test]
fn the_code_map_names_every_module_once() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_string())
        })
        .collect();
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = arch.find("## Code map").expect("a code map section");
    let end = arch[start + 3..]
        .find("\n## ")
        .map_or(arch.len(), |i| start + 3 + i);
    // A module is named by a bullet, or a sentence in one, that begins with its name
    // in backticks (or a list of such names) followed by a colon: "- `plan/`: ...",
    // "`notify`: ...", "`log`, `time`: ...".
    let map = &arch[start..end];
    let mut named = Vec::new();
    let bullets = map.split("\n- ").skip(1);
    for bullet in bullets {
        let bullet = bullet.split_whitespace().collect::<Vec<_>>().join(" ");
        for sentence in bullet.split(". ") {
            let mut rest = sentence.trim_start();
            let mut names = Vec::new();
            while let Some(after) = rest.strip_prefix('`') {
                let Some(j) = after.find('`') else { break };
                names.push(after[..j].trim_end_matches('/').to_string());
                rest = &after[j + 1..];
                if let Some(r) = rest.strip_prefix(", ") {
                    rest = r;
                } else {
                    break;
                }
            }
            if rest.starts_with(':') {
                named.extend(names.into_iter().filter(|n| declared.contains(n)));
            }
        }
    }
    let named_set: BTreeSet<String> = named.iter().cloned().collect();
    let twice: Vec<&String> = named_set
        .iter()
        .filter(|n| named.iter().filter(|m| m == n).count() > 1)
        .collect();
    let missing: Vec<&String> = declared.difference(&named_set).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "ARCHITECTURE.md's code map: missing {missing:?}, named twice {twice:?}"
    );
}
