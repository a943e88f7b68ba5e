//! The token secret never leaks. The real binary runs against the simulated node with
//! debug logging: `run` with a wrong secret (401s), then with the right one under
//! faults (500s, resets, cut-off and garbled bodies, a failing task), reloads with bad
//! configs that hold the secret and a URL password, SIGTERM; then every one-shot
//! command, and `check` and `once` with a secret file they refuse. Every stdout, every stderr, the journal, status.json, the metrics file
//! and every other file in the state dir are searched for the secrets.

use super::agent::{poll_until, SIGHUP, SIGTERM, SIGUSR1};
use super::rig::{fast_sim, guest, Rig};
use felhom_agent::sim::{Effect, FaultRule, Faults, Garble, Match, PowerState, Sim, SimOptions};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// In both secrets, so that a cut-off or partial print is found too.
const CANARY: &str = "LEAKCANARY";
/// The token's secret, as the simulated node knows it.
const SECRET: &str = "7e3a91c4-LEAKCANARY-4f0d-b2e8-c51a6d09f3b7";
/// The secret the agent first runs with: refused by the node, still a secret.
const WRONG: &str = "0b5d7f19-LEAKCANARY-wrong-9c2e-1a4b8d6f0e33";
/// The password of an api_url with user information.
const PASSWORD: &str = "hunter2";

const T: Duration = Duration::from_secs(30);

extern "C" {
    // From the C library std already links.
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Everything the agent wrote that a person or a tool can read, by where it came from.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn add(&mut self, what: impl Into<String>, bytes: Vec<u8>) {
        self.0.push((what.into(), bytes));
    }

    /// Every file under `dir`, recursively.
    fn add_dir(&mut self, dir: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.add_dir(&path);
            } else {
                self.add(path.display().to_string(), fs::read(&path).unwrap());
            }
        }
    }

    /// No output holds any of `needles`.
    fn assert_clean(&self, needles: &[&str]) {
        for (what, bytes) in &self.0 {
            let text = String::from_utf8_lossy(bytes);
            for needle in needles {
                assert!(!text.contains(needle), "{what} holds {needle:?}:\n{text}");
            }
        }
    }
}

/// `felhom-agent run` with its stdout and stderr in files outside the state dir.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(rig: &Rig, name: &str) -> Running {
        let stdout = rig.dir.path().join(format!("{name}.stdout"));
        let stderr = rig.dir.path().join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .args(["run", "--log-level", "debug", "--config"])
            .arg(&rig.config_path)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("the agent starts");
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `n` times.
    fn wait_for(&self, needle: &str, n: usize) {
        assert!(
            poll_until(T, || self.log().matches(needle).count() >= n),
            "no {n} x {needle:?} in the log within {T:?}:\n{}",
            self.log()
        );
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        let rc = unsafe { kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// SIGTERM, then waits for the exit; returns it and the process's outputs.
    fn stop(mut self, name: &str, out: &mut Outputs) -> ExitStatus {
        self.signal(SIGTERM);
        let mut status = None;
        assert!(
            poll_until(T, || {
                status = self.child.try_wait().unwrap();
                status.is_some()
            }),
            "the agent did not stop within {T:?}:\n{}",
            self.log()
        );
        out.add(format!("{name} stdout"), fs::read(&self.stdout).unwrap());
        out.add(format!("{name} stderr"), fs::read(&self.stderr).unwrap());
        status.unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a one-shot command with debug logging and keeps its outputs.
fn one_shot(config: &Path, args: &[&str], out: &mut Outputs) -> ExitStatus {
    let o = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .args(args)
        .args(["--log-level", "debug", "--config"])
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("the binary runs");
    let name = args.join(" ");
    out.add(format!("`{name}` stdout"), o.stdout);
    out.add(format!("`{name}` stderr"), o.stderr);
    o.status
}

fn config_json(rig: &Rig) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(&rig.config_path).unwrap()).unwrap()
}

fn write_config(rig: &Rig, config: &serde_json::Value) {
    rig.dir.write("config.json", config.to_string(), 0o644);
}

/// Faults that make errors happen on every kind of request, each on a fixed request so
/// that every one of them is sure to hit.
fn faults() -> Faults {
    let mut f =
        Faults::rule(FaultRule::new(Match::method("GET"), Effect::StatusBefore(500)).nth(2))
            .with(FaultRule::new(Match::any(), Effect::Reset).nth(5))
            .with(FaultRule::new(Match::method("GET"), Effect::Truncate(30)).nth(9))
            .with(FaultRule::new(Match::method("GET"), Effect::Garble(Garble::WrongType)).nth(13))
            .with(FaultRule::new(Match::method("GET"), Effect::Html).nth(17))
            .with(FaultRule::new(Match::post("status/start"), Effect::StatusAfter(596)).nth(1))
            .with(FaultRule::new(Match::method("PUT"), Effect::StatusAfter(502)).nth(1));
    // Guest 103's start task fails, again and again.
    f.fail_tasks
        .insert(103, "startup for container '103' failed".to_string());
    f
}

#[test]
fn the_token_secret_never_leaks() {
    let opts = SimOptions {
        token_secret: SECRET.to_string(),
        ..fast_sim()
    };
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running"},
        {"vmid": 102, "state": "stopped", "cores": 2},
        {"vmid": 103, "state": "running", "memory": 1024}]}"#;
    let rig = Rig::new(
        "secrets",
        opts,
        vec![guest(101, false), guest(102, true), guest(103, false)],
        desired,
        serde_json::json!({"interval_secs": 1, "unanswered_grace_secs": 5}),
    );
    let metrics = rig.dir.path().join("metrics.prom");
    let mut good = config_json(&rig);
    good["metrics_file"] = serde_json::json!(metrics);
    write_config(&rig, &good);
    let mut out = Outputs::default();

    // A wrong secret: the node answers 401.
    rig.dir.write("token.secret", format!("{WRONG}\n"), 0o600);
    let agent = Running::start(&rig, "run-wrong");
    assert!(
        rig.sim.wait_until(T, |s| s
            .requests()
            .iter()
            .filter(|r| r.status == 401)
            .count()
            >= 2),
        "no 401s:\n{}",
        agent.log()
    );
    agent.stop("run with the wrong secret", &mut out);
    one_shot(&rig.config_path, &["once"], &mut out);
    one_shot(&rig.config_path, &["plan", "--json"], &mut out);
    assert!(
        !rig.sim.requests().iter().any(|r| r.task.is_some()),
        "a task started with the wrong secret"
    );

    // The right secret, under faults.
    rig.dir.write("token.secret", format!("{SECRET}\n"), 0o600);
    rig.sim.set_faults(faults());
    let agent = Running::start(&rig, "run");
    agent.wait_for("msg=\"pass finished\"", 3);

    // A reload with a URL that holds a password, then one with the secret pasted
    // into token_id: refused, and shown in the log and status.json without it.
    let mut bad = good.clone();
    bad["api_url"] = serde_json::json!(format!("https://root:{PASSWORD}@host:8006"));
    let mut pasted = good.clone();
    pasted["token_id"] = serde_json::json!(format!("agent@pve!reconciler={SECRET}"));
    for (i, (config, key)) in [(&bad, "api_url"), (&pasted, "token_id")]
        .into_iter()
        .enumerate()
    {
        write_config(&rig, config);
        agent.signal(SIGHUP);
        agent.wait_for("msg=\"reload failed", i + 1);
        // Every pass that finishes from here on writes the reload's error.
        let passes = agent.log().matches("msg=\"pass finished\"").count();
        agent.signal(SIGUSR1);
        agent.wait_for("msg=\"pass finished\"", passes + 1);
        let status = fs::read_to_string(rig.state_dir().join("status.json")).unwrap();
        assert!(status.contains(&format!("{key}: ")), "{status}");
        assert!(
            key != "api_url" || status.contains("https://***@host:8006"),
            "{status}"
        );
        out.add(
            format!("status.json after the bad reload of {key}"),
            status.into(),
        );
        // The commands an operator runs next read the same bad file.
        for args in [&["check"][..], &["status", "--json"], &["plan"]] {
            let status = one_shot(&rig.config_path, args, &mut out);
            assert_eq!(status.code(), Some(2), "{args:?} with a bad {key}");
        }
    }
    write_config(&rig, &good);
    agent.signal(SIGHUP);
    agent.wait_for("msg=reloaded", 1);
    // Passes go on every second, faults and all, until 101 runs.
    let started = |s: &Sim| s.guest(101).unwrap().status == PowerState::Running;
    assert!(rig.sim.wait_until(T, started), "{}", agent.log());
    let log = agent.log();
    let exit = agent.stop("run", &mut out);
    assert!(exit.success(), "{exit}");

    // Every fault hit, a task failed, and the agent got work done: the node started
    // tasks, which it does only for a request that carries the secret it knows.
    assert!(
        rig.sim.fault_hits().iter().all(|h| *h > 0),
        "{:?}",
        rig.sim.fault_hits()
    );
    assert!(
        log.contains("startup for container '103' failed"),
        "guest 103's start task did not fail:\n{log}"
    );
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    assert!(
        rig.sim
            .requests()
            .iter()
            .any(|r| r.task.is_some() && r.status == 200),
        "the node never took the secret"
    );

    // The one-shot commands, faults still on.
    for args in [
        &["once"][..],
        &["once", "--json"],
        &["plan"],
        &["plan", "--json"],
        &["check"],
        &["status"],
        &["status", "--json"],
        &["journal"],
        &["journal", "--json"],
        &["journal", "--in-flight", "--json"],
    ] {
        one_shot(&rig.config_path, args, &mut out);
    }
    // A secret file the agent refuses: two words, then readable by others. The
    // refusal names the file, never what is in it.
    for mode in [0o600, 0o644] {
        rig.dir
            .write("token.secret", format!("{SECRET} {WRONG}\n"), mode);
        for args in [&["check"][..], &["once"]] {
            let status = one_shot(&rig.config_path, args, &mut out);
            assert_eq!(
                status.code(),
                Some(2),
                "{args:?} with a refused secret file"
            );
        }
    }
    out.add_dir(&rig.state_dir());
    out.add("the metrics file", fs::read(&metrics).unwrap());
    assert!(out.0.iter().any(|(w, _)| w.ends_with("journal")));
    out.assert_clean(&[SECRET, WRONG, CANARY, PASSWORD]);
}

#[test]
fn check_never_shows_the_password_of_an_api_url() {
    let rig = Rig::new(
        "secrets-check",
        fast_sim(),
        vec![],
        r#"{"guests": []}"#,
        serde_json::json!({"api_url": format!("https://root:{PASSWORD}@host:8006")}),
    );
    let mut out = Outputs::default();
    let status = one_shot(&rig.config_path, &["check"], &mut out);
    assert_eq!(status.code(), Some(2), "{status}");
    let stderr = String::from_utf8_lossy(&out.0[1].1).into_owned();
    assert!(
        stderr.contains("api_url: ") && stderr.contains("https://***@host:8006"),
        "{stderr}"
    );
    out.assert_clean(&[PASSWORD, "root:"]);
}

/// A token secret pasted where its file's path belongs: the agent cannot read such
/// a file, and its message must not name it, since the name is the secret (PVE's
/// token secrets are UUIDs: pve-access-control src/PVE/TokenConfig.pm).
#[test]
fn a_secret_pasted_as_the_secret_file_is_never_shown() {
    const PASTED: &str = "5f0c9e2a-8b17-4d3e-a6c4-91e2b7d04f5a";
    let rig = Rig::new(
        "secrets-pasted",
        fast_sim(),
        vec![],
        r#"{"guests": []}"#,
        serde_json::json!({}),
    );
    let mut out = Outputs::default();
    let mut config = config_json(&rig);
    for value in [
        PASTED.to_string(),
        format!("agent@pve!reconciler={PASTED}"),
        format!("/etc/felhom-agent/{}", PASTED.to_uppercase()),
    ] {
        config["token_secret_file"] = serde_json::json!(value);
        write_config(&rig, &config);
        for args in [&["check"][..], &["once"], &["plan"]] {
            let status = one_shot(&rig.config_path, args, &mut out);
            assert_eq!(status.code(), Some(2), "{args:?} with {value}");
        }
        let stderr = String::from_utf8_lossy(&out.0.last().unwrap().1).into_owned();
        assert!(stderr.contains("token_secret_file: "), "{stderr}");
    }
    out.assert_clean(&[PASTED, &PASTED.to_uppercase(), "5f0c9e2a"]);
}

/// The token for `desired_url` never leaks either: the source refuses it (401), answers
/// with it (a body that repeats the Authorization header), redirects to plain http,
/// reloads hold it pasted where its file belongs or in a file others can read; the
/// report carries it only in its header, to the source's own origin. Every output is
/// searched, as above, and the source's log shows the token was sent all along.
#[test]
fn the_desired_source_token_never_leaks() {
    use super::source::STATE_A;
    use super::source_run::{any_port, tls_source, url_rig};
    use felhom_agent::sim::{Serve, Source, SourceOptions};
    const TOKEN: &str = "glsrc-LEAKCANARY-9a8b7c6d5e4f";
    let source = tls_source(any_port(), STATE_A);
    let plain = Source::start(SourceOptions::default(), STATE_A).unwrap();
    let rig = url_rig(
        "secrets-source",
        vec![guest(101, false)],
        &source.url(),
        serde_json::json!({
            "desired_token_file": "desired.token",
            "report_url": format!("{}/report", source.origin()),
            "metrics_file": "metrics.prom",
        }),
    );
    rig.dir.write("desired.token", format!("{TOKEN}\n"), 0o600);
    let good = config_json(&rig);
    let mut out = Outputs::default();
    let agent = Running::start(&rig, "run-source");
    agent.wait_for("msg=\"pass finished\"", 1);

    // With debug logging every failed fetch is logged.
    let errors = |n: usize| {
        assert!(
            poll_until(T, || agent
                .log()
                .matches("desired state source failed")
                .count()
                >= n),
            "no {n} failed fetches:\n{}",
            agent.log()
        );
    };
    let mut failures = 0;
    for serve in [
        Serve::Status(401),
        Serve::Reflect,
        Serve::Redirect(
            302,
            format!("http://localhost:{}/nodes/pve1.json", plain.addr().port()),
        ),
        Serve::Body("text/html", format!("<p>{TOKEN}</p>").into_bytes()),
    ] {
        source.set_serve(serve);
        failures += 1;
        errors(failures);
        let passes = agent.log().matches("msg=\"pass finished\"").count();
        agent.signal(SIGUSR1);
        agent.wait_for("msg=\"pass finished\"", passes + 1);
        let status = fs::read_to_string(rig.state_dir().join("status.json")).unwrap();
        out.add(
            format!("status.json after {failures} failures"),
            status.into(),
        );
    }
    assert!(
        plain.requests().is_empty(),
        "the token never went to plain http"
    );
    source.set_serve(Serve::Document);

    // Reloads: the token pasted as its file's path, the file readable by others, a
    // password in the URL. Refused, and shown without it.
    let mut pasted = good.clone();
    pasted["desired_token_file"] = serde_json::json!(TOKEN);
    let mut url = good.clone();
    url["desired_url"] = serde_json::json!(format!("https://u:{TOKEN}@localhost/x"));
    for (i, config) in [pasted, url].iter().enumerate() {
        write_config(&rig, config);
        agent.signal(SIGHUP);
        agent.wait_for("msg=\"reload failed", i + 1);
    }
    write_config(&rig, &good);
    rig.dir.write("desired.token", format!("{TOKEN}\n"), 0o644);
    agent.signal(SIGHUP);
    agent.wait_for("msg=\"reload failed", 3);
    rig.dir.write("desired.token", format!("{TOKEN}\n"), 0o600);
    agent.signal(SIGHUP);
    agent.wait_for("msg=reloaded", 1);
    let passes = agent.log().matches("msg=\"pass finished\"").count();
    agent.signal(SIGUSR1);
    agent.wait_for("msg=\"pass finished\"", passes + 1);
    assert!(agent.stop("run with a desired source", &mut out).success());

    for args in [
        &["check"][..],
        &["plan"],
        &["plan", "--json"],
        &["once", "--json"],
        &["status"],
        &["status", "--json"],
    ] {
        one_shot(&rig.config_path, args, &mut out);
    }
    rig.dir.write("desired.token", format!("{TOKEN}\n"), 0o640);
    let status = one_shot(&rig.config_path, &["check"], &mut out);
    assert_eq!(status.code(), Some(2));

    let log = source.requests();
    assert!(
        log.iter().any(|r| r.method == "POST"),
        "reports were posted"
    );
    assert!(log
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));
    for r in log.iter().filter(|r| r.method == "POST") {
        out.add("a report's body", r.body.clone());
    }
    out.add_dir(&rig.state_dir());
    out.add(
        "the metrics file",
        fs::read(rig.dir.path().join("metrics.prom")).unwrap(),
    );
    assert!(out
        .0
        .iter()
        .any(|(w, _)| w.ends_with("desired-last-good.json")));
    out.assert_clean(&[TOKEN, CANARY, rig.sim.token_secret()]);
}

/// The operator pastes the token id with its secret, separated by a space, a tab or a
/// `:` instead of the dialog's `=`: `check` refuses it without echoing any of the secret
/// (an echo cut to 40 characters would show its first 22).
#[test]
fn a_token_id_pasted_with_its_secret_is_not_echoed() {
    let dir = super::config::TempDir::new("secret-pasted-id");
    let secret = "9f1c2d3e-dead-beef-0000-000000000000";
    let file = dir.write("token.secret", "x", 0o600);
    for sep in [" ", "\t", ":", "="] {
        let config = serde_json::json!({
            "token_id": format!("agent@pve!tok{sep}{secret}"),
            "token_secret_file": file,
            "node": "pve1",
        });
        let path = dir.write("config.json", config.to_string(), 0o644);
        let out = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("binary runs");
        assert_eq!(out.status.code(), Some(2));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("token_id"), "{text}");
        assert!(
            !text.contains(&secret[..8]),
            "separator {sep:?}: the secret is echoed: {text}"
        );
    }
}
