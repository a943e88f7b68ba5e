//! Seeded randomized tests of the config reader. Documents are built from the key
//! table: valid values (with the config they must give), edge and wrong values of
//! every kind, unknown and repeated keys, then rendered in random spellings and
//! sometimes mutated. No input may panic, every problem must point inside the input,
//! and every config read must survive [`Config::to_json`] and a second read.

use super::*;
use crate::fuzz::{self, cases, mutate, pick, Doc};
use crate::json::tests_fuzz::check_problems;
use crate::rng::XorShift;

/// Config paths with different bases: nested, at the root, and relative ones
/// (resolved against the working directory, made absolute).
const CONFIG_PATHS: &[&str] = &[
    "/etc/felhom-agent/config.json",
    "/config.json",
    "/srv/é x/agent.json",
    "config.json",
    "rel/dir/config.json",
];

/// The integer keys: name, smallest and largest allowed value.
const INTEGERS: &[(&str, u64, u64)] = &[
    ("interval_secs", 1, 86400),
    ("max_parallel", 1, 64),
    ("task_timeout_secs", 1, 86400),
    ("shutdown_timeout_secs", 1, 3600),
    ("drain_timeout_secs", 1, 600),
    ("unanswered_grace_secs", 5, 3600),
    ("journal_compact_bytes", 4096, u64::MAX),
    ("desired_interval_secs", 1, 86400),
];

const PATH_KEYS: &[&str] = &[
    "token_secret_file",
    "ca_file",
    "desired_file",
    "desired_token_file",
    "desired_ca_file",
    "state_dir",
    "metrics_file",
];

/// Valid URLs for `desired_url` and `report_url`, as given and as kept.
const URLS: &[(&str, &str)] = &[
    (
        "https://cp.example.com/nodes/pve1.json",
        "https://cp.example.com/nodes/pve1.json",
    ),
    ("https://cp", "https://cp/"),
    ("https://cp:8443?node=pve1", "https://cp:8443/?node=pve1"),
    (
        "https://git.example.com/ops/fleet/raw/branch/main/pve1.json?ref=main&x=%20",
        "https://git.example.com/ops/fleet/raw/branch/main/pve1.json?ref=main&x=%20",
    ),
    (
        "http://127.0.0.1:8080/d.json",
        "http://127.0.0.1:8080/d.json",
    ),
];

/// A generated document, the config it gives when it is clean, and the hostname
/// the reader is to see.
struct Generated {
    doc: Doc,
    want: Option<Config>,
    hostname: Result<String, ()>,
}

/// The directory relative paths resolve against, worked out here rather than with
/// the reader's own `base_dir`.
fn base_of(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap().join(dir)
    }
}

/// The config a document with only the required keys gives.
fn start(path: &Path) -> Config {
    Config {
        path: path.to_path_buf(),
        fixed: Fixed {
            api_url: "https://127.0.0.1:8006".into(),
            node: "pve1".into(),
            token_id: String::new(),
            token_secret_file: PathBuf::new(),
            ca_file: None,
            desired_ca_file: None,
            state_dir: "/var/lib/felhom-agent".into(),
            max_parallel: 4,
            task_timeout: Duration::from_secs(600),
            unanswered_grace: Duration::from_secs(120),
            journal_compact_bytes: 4 << 20,
        },
        live: Live {
            desired_file: None,
            desired_url: None,
            desired_token_file: None,
            desired_interval: None,
            report_url: None,
            interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(20),
            stop_mode: StopMode::Shutdown,
            metrics_file: None,
            hold_tag: "felhom-hold".into(),
            identity_guard: true,
            ha_mode: HaMode::Skip,
        },
    }
}

fn word(rng: &mut XorShift, first: &[u8], rest: &[u8], len: usize) -> String {
    let mut s = String::from(char::from(pick(rng, first)));
    for _ in 1..len {
        s.push(char::from(pick(rng, rest)));
    }
    s
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A valid value for `key` as a document, applied to `cfg`.
fn valid(rng: &mut XorShift, key: &str, base: &Path, cfg: &mut Config) -> Doc {
    let text = match key {
        "api_url" => {
            let (given, origin): (String, String) = match rng.below(3) {
                0 => {
                    let (g, o) = pick(
                        rng,
                        &[
                            ("https://127.0.0.1:8006", "https://127.0.0.1:8006"),
                            (
                                "https://pve1.example.com:8006/",
                                "https://pve1.example.com:8006",
                            ),
                            ("http://127.0.0.1:8006", "http://127.0.0.1:8006"),
                            ("http://127.1.2.3:1/", "http://127.1.2.3:1"),
                            ("https://pve1", "https://pve1"),
                            ("https://pve1:08006", "https://pve1:8006"),
                            ("https://h_x-1.lan:65535", "https://h_x-1.lan:65535"),
                        ],
                    );
                    (g.into(), o.into())
                }
                _ => {
                    let len = 1 + rng.below(20) as usize;
                    let host = word(rng, b"ab-._9", b"abcxyz019-._", len);
                    let origin = match rng.below(2) {
                        0 => format!("https://{host}"),
                        _ => format!("https://{host}:{}", 1 + rng.below(65535)),
                    };
                    let slash = if rng.chance(0.3) { "/" } else { "" };
                    (format!("{origin}{slash}"), origin)
                }
            };
            cfg.fixed.api_url = origin;
            given
        }
        "node" => {
            let len = 1 + rng.below(20) as usize;
            let mut n = word(rng, ALNUM, b"abz09-", len);
            if n.ends_with('-') {
                n.push('0');
            }
            cfg.fixed.node = n.clone();
            n
        }
        "token_id" => {
            let ulen = 1 + rng.below(8) as usize;
            let user = word(rng, b"ab@!.", b"ab9@!.-_", ulen) + pick(rng, &["", "é", "中"]);
            let id_len = 2 + rng.below(10) as usize;
            let realm = word(rng, b"pP", b"am.-_9", id_len);
            let id = word(rng, b"rZ", b"ec.-_0", id_len);
            let t = format!("{user}@{realm}!{id}");
            cfg.fixed.token_id = t.clone();
            t
        }
        "stop_mode" => {
            let (s, m) = pick(
                rng,
                &[("shutdown", StopMode::Shutdown), ("stop", StopMode::Stop)],
            );
            cfg.live.stop_mode = m;
            s.to_string()
        }
        "hold_tag" => {
            // Kept lowercased, as PVE keeps tags.
            let len = 1 + rng.below(12) as usize;
            let t = word(rng, b"aZ9_", b"azAZ09_-+.", len);
            cfg.live.hold_tag = t.to_ascii_lowercase();
            t
        }
        "ha_mode" => {
            let (s, m) = pick(rng, &[("skip", HaMode::Skip), ("request", HaMode::Request)]);
            cfg.live.ha_mode = m;
            s.to_string()
        }
        "desired_url" | "report_url" => {
            let (given, full) = pick(rng, URLS);
            let url = crate::remote::RemoteUrl::parse(full).ok();
            assert_eq!(url.as_ref().map(|u| u.full()).as_deref(), Some(full));
            match key {
                "desired_url" => cfg.live.desired_url = url,
                _ => cfg.live.report_url = url,
            }
            given.to_string()
        }
        "identity_guard" => {
            let b = rng.chance(0.5);
            cfg.live.identity_guard = b;
            return Doc::num(b);
        }
        _ if PATH_KEYS.contains(&key) => {
            let p = match rng.below(3) {
                0 => fuzz::text(rng, 10).replace('\0', "_"),
                _ => pick(
                    rng,
                    &[
                        "token", "/etc/x/y", "../up", "./a/b", "a b", "é/ü", "dir/", "//x", "~",
                    ],
                )
                .to_string(),
            };
            let p = if p.is_empty() { "x".to_string() } else { p };
            let resolved = Some(base.join(&p));
            match key {
                "token_secret_file" => cfg.fixed.token_secret_file = base.join(&p),
                "ca_file" => cfg.fixed.ca_file = resolved,
                "desired_file" => cfg.live.desired_file = resolved,
                "desired_token_file" => cfg.live.desired_token_file = resolved,
                "desired_ca_file" => cfg.fixed.desired_ca_file = resolved,
                "state_dir" => cfg.fixed.state_dir = base.join(&p),
                _ => cfg.live.metrics_file = resolved,
            }
            p
        }
        _ => {
            let &(_, lo, hi) = INTEGERS.iter().find(|(k, _, _)| *k == key).unwrap();
            // Within the bound on task_timeout_secs checked after all keys.
            let lo = match key {
                "task_timeout_secs" => lo.max(cfg.live.shutdown_timeout.as_secs() * 2 + 30),
                _ => lo,
            };
            let n = match rng.below(3) {
                0 => lo,
                1 => hi,
                _ => lo + rng.below(hi - lo),
            };
            let secs = Duration::from_secs(n);
            match key {
                "interval_secs" => cfg.live.interval = secs,
                "max_parallel" => cfg.fixed.max_parallel = n as usize,
                "task_timeout_secs" => cfg.fixed.task_timeout = secs,
                "shutdown_timeout_secs" => cfg.live.shutdown_timeout = secs,
                "drain_timeout_secs" => cfg.live.drain_timeout = secs,
                "unanswered_grace_secs" => cfg.fixed.unanswered_grace = secs,
                "desired_interval_secs" => cfg.live.desired_interval = Some(secs),
                _ => cfg.fixed.journal_compact_bytes = n,
            }
            return Doc::num(n);
        }
    };
    Doc::Str(text)
}

/// A value for `key` that is probably wrong: the wrong type, or the right type at
/// an edge or past it.
fn wrong(rng: &mut XorShift, key: &str) -> Doc {
    if rng.below(4) == 0 {
        return pick(
            rng,
            &[
                Doc::Raw("null".into()),
                Doc::Raw("true".into()),
                Doc::Arr(vec![]),
                Doc::Obj(vec![]),
                Doc::Arr(vec![Doc::str("x")]),
            ],
        );
    }
    let strings: &[&str] = match key {
        "api_url" => &[
            "https://root:hunter2@host:8006",
            "ftp://pve1",
            "http://localhost:8006",
            "https://[::1]:8006",
            "https://pve1:0",
            "https://pve1:65536",
            "https://pve1/api2/json",
            "https://",
            "",
        ],
        "node" => &["", "-pve", "pve-", "pve 1", "pve1.example.com", "pvé"],
        "token_id" => &[
            "agent@pve",
            "agent@pve!r",
            "@pve!tok",
            "agent@p!tok",
            "a b@pve!tok",
            "agent@pve!reconciler=5e0b7c1a",
        ],
        "stop_mode" => &["Stop", "halt", ""],
        "hold_tag" => &["", "-x", "a b", "é"],
        "ha_mode" => &["Skip", "ignore", ""],
        "identity_guard" => &["true", "yes"],
        "token_secret_file" => &["", "a\0b", "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab"],
        "desired_token_file" => &[
            "",
            "a\0b",
            "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab",
            "ghp_0123456789abcdefghij",
            "0123456789abcdef0123456789abcdef01234567",
        ],
        "desired_url" | "report_url" => &[
            "https://root:hunter2@cp/x",
            "http://cp.example.com/x",
            "http://localhost/x",
            "https://cp/x#top",
            "https://cp/a b",
            "https://[::1]/x",
            "ftp://cp/x",
            "cp/x",
            "",
        ],
        _ if PATH_KEYS.contains(&key) => &["", "a\0b"],
        _ => {
            let &(_, lo, hi) = INTEGERS.iter().find(|(k, _, _)| *k == key).unwrap();
            let edges = [
                lo.saturating_sub(1).to_string(),
                hi.saturating_add(1).to_string(),
                "18446744073709551616".into(),
                "-1".into(),
                "-0".into(),
                "1.0".into(),
                "1e3".into(),
                "1e999".into(),
                fuzz::number(rng),
            ];
            return match rng.below(4) {
                0 => Doc::Str(lo.to_string()),
                _ => Doc::Raw(pick(rng, &edges)),
            };
        }
    };
    match rng.below(4) {
        0 => Doc::Str(fuzz::text(rng, 12)),
        _ => Doc::str(pick(rng, strings)),
    }
}

/// A config document: `clean` ones hold only valid values and say what they give.
fn generate(rng: &mut XorShift, path: &Path, clean: bool) -> Generated {
    let base = base_of(path);
    let mut cfg = start(path);
    let mut members = Vec::new();
    // The shutdown timeout before the task timeout, so that a clean document meets
    // the bound between them; written in a random order all the same.
    let mut keys: Vec<&str> = KEYS.to_vec();
    let sh = keys
        .iter()
        .position(|k| *k == "shutdown_timeout_secs")
        .unwrap();
    let task = keys.iter().position(|k| *k == "task_timeout_secs").unwrap();
    keys.swap(sh, task);
    for key in keys {
        let required = matches!(key, "token_id" | "token_secret_file");
        let task_needed = key == "task_timeout_secs"
            && cfg.fixed.task_timeout.as_secs() < cfg.live.shutdown_timeout.as_secs() * 2 + 30;
        let present = (clean && (required || task_needed)) || rng.chance(0.6);
        if !present {
            continue;
        }
        // A clean document has one desired source, and the keys that go with a
        // desired_url only beside it (KEYS lists desired_file and desired_url first).
        let has = |k: &str| members.iter().any(|(m, _): &(String, Doc)| m == k);
        let refused = match key {
            "desired_url" => has("desired_file"),
            "desired_token_file" | "desired_interval_secs" => !has("desired_url"),
            _ => false,
        };
        if clean && refused {
            continue;
        }
        let value = if clean || rng.chance(0.8) {
            valid(rng, key, &base, &mut cfg)
        } else {
            wrong(rng, key)
        };
        members.push((key.to_string(), value));
    }
    if !clean {
        for _ in 0..rng.below(3) {
            match rng.below(3) {
                0 if !members.is_empty() => {
                    let m = pick(rng, &members);
                    members.push(m);
                }
                1 => {
                    let k = pick(rng, &["interval", "api-url", "Node", "stop_modes", "token"]);
                    members.push((k.to_string(), Doc::num(1)));
                }
                _ => members.push((fuzz::text(rng, 8), fuzz::any_doc(rng, 2))),
            }
        }
        let at = rng.below(members.len() as u64 + 1) as usize;
        members.rotate_left(at);
    } else {
        // Any order: the reader must not depend on it.
        let n = members.len() as u64;
        for i in (1..members.len()).rev() {
            members.swap(i, rng.below(n.min(i as u64 + 1)) as usize);
        }
    }
    let hostname = if clean || rng.chance(0.7) {
        Ok(pick(rng, &["pve1", "pve1.example.com\n", "pve1\n"]).to_string())
    } else {
        match rng.below(3) {
            0 => Err(()),
            1 => Ok("-bad\n".into()),
            _ => Ok(String::new()),
        }
    };
    let doc = match rng.below(if clean { 1 } else { 30 }) {
        1 => Doc::Arr(members.into_iter().map(|(_, v)| v).collect()),
        2 => fuzz::any_doc(rng, 1),
        _ => Doc::Obj(members),
    };
    Generated {
        doc,
        want: clean.then_some(cfg),
        hostname,
    }
}

fn read(text: &str, path: &Path, hostname: &Result<String, ()>) -> Result<Config, ConfigError> {
    parse_with(text, path, || {
        hostname
            .clone()
            .map_err(|()| io::Error::other("no hostname here"))
    })
}

/// `cfg` written out and read again (without a hostname, which a complete file does
/// not need) is `cfg`.
pub(super) fn round_trip(cfg: &Config) {
    let text = cfg.to_json();
    let again = read(&text, &cfg.path, &Err(()))
        .unwrap_or_else(|e| panic!("the printed config is refused:\n{e}\n{text}"));
    assert_eq!(&again, cfg, "\n{text}");
    assert_eq!(again.to_json(), text);
}

#[test]
fn fuzz_config_never_panics_and_problems_are_inside_the_input() {
    cases("config parse", |rng| {
        let path = Path::new(pick(rng, CONFIG_PATHS));
        let clean = rng.chance(0.3);
        let g = generate(rng, path, clean);
        let mut text = fuzz::render(rng, &g.doc);
        if rng.chance(0.6) {
            text = String::from_utf8_lossy(&mutate(rng, text.as_bytes())).into_owned();
        }
        match read(&text, path, &g.hostname) {
            Ok(cfg) => round_trip(&cfg),
            Err(ConfigError::Invalid {
                problems, omitted, ..
            }) => {
                check_problems(&text, &problems);
                assert!(omitted == 0 || problems.len() == crate::desired::MAX_PROBLEMS);
            }
            Err(e) => panic!("parse gave {e:?}"),
        }
    });
}

#[test]
fn fuzz_config_valid_documents_read_as_written_and_round_trip() {
    cases("config round trip", |rng| {
        let path = Path::new(pick(rng, CONFIG_PATHS));
        let g = generate(rng, path, true);
        let want = g.want.expect("a clean document is valid");
        let text = fuzz::render(rng, &g.doc);
        let got = read(&text, path, &g.hostname)
            .unwrap_or_else(|e| panic!("a valid config is refused:\n{e}\n{text}"));
        assert_eq!(got, want, "\n{text}");
        round_trip(&got);
    });
}
