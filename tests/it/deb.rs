//! The Debian package: built by `./build.sh package` around the test build of the
//! binary, then read with `dpkg-deb` (file list, control fields, conffiles, maintainer
//! scripts) and installed, removed and purged with `dpkg --root` in a scratch root.
//!
//! `./build.sh deb` builds the same package around the static binary and runs lintian
//! on it. Without dpkg-deb these tests say so and pass, except in CI and as root,
//! where they must run.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether the package tests can run here; panics where they must and cannot.
fn can_run(test: &str, needs_root: bool) -> bool {
    let must = std::env::var("CI").as_deref() == Ok("true") || root();
    let missing: Vec<&str> = ["dpkg-deb", "dpkg", "gzip"]
        .into_iter()
        .filter(|t| !has(t))
        .collect();
    if !missing.is_empty() {
        assert!(
            !must,
            "{test}: {missing:?} missing, and in CI or as root it must run"
        );
        eprintln!("SKIPPED {test}: {missing:?} not installed (apt install dpkg)");
        return false;
    }
    if needs_root && !root() {
        assert!(!must, "{test}: must run as root in CI");
        eprintln!("SKIPPED {test}: dpkg --root needs root to own the files it installs");
        return false;
    }
    true
}

/// The package, built once per test process.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
        let _ = std::fs::remove_dir_all(&out);
        let built = run(Command::new("bash")
            .arg(Path::new(REPO).join("build.sh"))
            .args(["package", env!("CARGO_BIN_EXE_felhom-agent")])
            .arg(&out)
            .current_dir(REPO));
        let path = PathBuf::from(text(&built.stdout).trim());
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("felhom-agent_{VERSION}_amd64.deb")
        );
        path
    })
}

/// A fresh scratch directory under the test build's tmp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_package_holds_the_agent_its_docs_and_nothing_else() {
    if !can_run("deb contents", false) {
        return;
    }
    let deb = deb();
    // Every path with its mode and owner.
    let listing = text(&run(Command::new("dpkg-deb").arg("--contents").arg(deb)).stdout);
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "root/root", "{line}");
        let path = cols[5].trim_start_matches('.');
        if !cols[0].starts_with('d') {
            files.insert(path.to_string(), cols[0].to_string());
        }
    }
    let expected: BTreeMap<String, String> = [
        ("/etc/felhom-agent/config.json", "-rw-r--r--"),
        ("/usr/bin/felhom-agent", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/felhom-agent.service", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/felhom-agent",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/felhom-agent/README.md.gz", "-rw-r--r--"),
        ("/usr/share/doc/felhom-agent/changelog.gz", "-rw-r--r--"),
        ("/usr/share/doc/felhom-agent/copyright", "-rw-r--r--"),
        (
            "/usr/share/doc/felhom-agent/examples/config.example.json",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/felhom-agent/examples/desired.example.json",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/felhom-agent/examples/grafana-dashboard.json",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/felhom-agent/examples/prometheus-alerts.yml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/felhom-agent/examples/runit/log/run",
            "-rwxr-xr-x",
        ),
        (
            "/usr/share/doc/felhom-agent/examples/runit/run",
            "-rwxr-xr-x",
        ),
        ("/usr/share/lintian/overrides/felhom-agent", "-rw-r--r--"),
        ("/usr/share/man/man8/felhom-agent.8.gz", "-rw-r--r--"),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(files, expected);

    // Control fields.
    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name)).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "felhom-agent");
    assert_eq!(field("Version"), VERSION);
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Section"), "admin");
    assert_eq!(field("Priority"), "optional");
    assert!(field("Maintainer").contains('@'), "{}", field("Maintainer"));
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 0);
    assert!(field("Description").starts_with(felhom_agent::manual::ABOUT));
    // A static binary: nothing to depend on.
    assert_eq!(field("Depends"), "");

    // The control area: conffiles and the maintainer scripts.
    let control = scratch("deb-control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/felhom-agent/config.json\n"
    );
    let md5sums = std::fs::read_to_string(control.join("md5sums")).unwrap();
    assert!(md5sums.contains("  usr/bin/felhom-agent\n"), "{md5sums}");
    assert!(!md5sums.contains("etc/"), "conffiles are not in md5sums");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
        run(Command::new("sh").arg("-n").arg(&path));
    }
    let script = |name: &str| std::fs::read_to_string(control.join(name)).unwrap();
    // Installing starts nothing and enables nothing; an upgrade restarts only a
    // running agent.
    let postinst = script("postinst");
    for word in [" enable", " start ", "restart "] {
        let lines: Vec<&str> = postinst
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains(word))
            .collect();
        let allowed = |l: &&str| l.contains("try-restart") || l.contains("systemctl enable --now");
        assert!(lines.iter().all(allowed), "{word}: {lines:?}");
    }
    // Removing stops it; purging removes the state directory.
    let prerm = script("prerm");
    let remove = prerm
        .split("remove)")
        .nth(1)
        .unwrap()
        .split(";;")
        .next()
        .unwrap();
    assert!(
        remove.contains("deb-systemd-invoke stop felhom-agent.service"),
        "{prerm}"
    );
    let postrm = script("postrm");
    let purge = postrm
        .split("purge)")
        .nth(1)
        .unwrap()
        .split(";;")
        .next()
        .unwrap();
    assert!(
        purge.contains(r#"rm -rf "${DPKG_ROOT:-}/var/lib/felhom-agent""#),
        "{postrm}"
    );

    // The files themselves.
    let data = scratch("deb-data");
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(deb)
        .arg(&data));
    let read = |p: &str| std::fs::read_to_string(data.join(p.trim_start_matches('/'))).unwrap();
    let gunzip = |p: &str| {
        text(
            &run(Command::new("gzip")
                .arg("-dc")
                .arg(data.join(p.trim_start_matches('/'))))
            .stdout,
        )
    };
    let unit = read("/usr/lib/systemd/system/felhom-agent.service");
    assert!(
        unit.contains(
            "\nExecStart=/usr/bin/felhom-agent run --config /etc/felhom-agent/config.json\n"
        ),
        "{unit}"
    );
    assert!(unit.contains("\nDocumentation=man:felhom-agent(8)\n"));
    let runit = read("/usr/share/doc/felhom-agent/examples/runit/run");
    assert!(runit.contains("exec /usr/bin/felhom-agent run"), "{runit}");
    // Rendered from the same source (shown only by name: they are long).
    assert!(
        gunzip("/usr/share/man/man8/felhom-agent.8.gz") == felhom_agent::manual::man_page(),
        "the packaged man page is not the one src/manual renders"
    );
    assert!(
        read("/usr/share/bash-completion/completions/felhom-agent")
            == felhom_agent::manual::completion(),
        "the packaged completion is not the one src/manual renders"
    );
    let changelog = gunzip("/usr/share/doc/felhom-agent/changelog.gz");
    assert!(
        changelog.starts_with(&format!("felhom-agent ({VERSION}) ")),
        "{changelog}"
    );
    let copyright = read("/usr/share/doc/felhom-agent/copyright");
    assert!(copyright.contains("License: Expat\n Permission is hereby granted"));
    // The conffile is a config the agent accepts, its paths beside it.
    let config = felhom_agent::config::Config::parse(
        &read("/etc/felhom-agent/config.json"),
        Path::new("/etc/felhom-agent/config.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.fixed.token_secret_file,
        Path::new("/etc/felhom-agent/token")
    );
    assert_eq!(
        config.live.desired_file.as_deref(),
        Some(Path::new("/etc/felhom-agent/desired.json"))
    );
}

#[test]
fn install_says_what_to_do_keeps_an_edited_config_and_purge_removes_the_state() {
    if !can_run("deb install", true) {
        return;
    }
    let deb = deb();
    let root = scratch("deb-root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").unwrap();
    }
    // The maintainer scripts run outside a chroot, with DPKG_ROOT set to the root.
    let dpkg = |args: &[&str]| {
        let out = run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-script-chrootless",
                "--force-not-root",
                "--log=/dev/null",
            ])
            .args(args)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ));
        text(&out.stdout) + &text(&out.stderr)
    };
    let at = |p: &str| root.join(p);

    let said = dpkg(&["--install", deb.to_str().unwrap()]);
    for step in [
        "installed, not running",
        "install -m 600 /dev/stdin /etc/felhom-agent/token",
        "felhom-agent export --all > /etc/felhom-agent/desired.json",
        "felhom-agent check && felhom-agent plan",
        "systemctl enable --now felhom-agent",
    ] {
        assert!(said.contains(step), "{step:?} missing from:\n{said}");
    }
    assert!(at("usr/bin/felhom-agent").is_file());
    assert!(at("etc/felhom-agent/config.json").is_file());
    // The links `systemctl enable` would make are recorded, for the purge.
    let dsh = at("var/lib/systemd/deb-systemd-helper-enabled/felhom-agent.service.dsh-also");
    if has("deb-systemd-helper") {
        assert!(dsh.is_file(), "deb-systemd-helper update-state ran");
    }

    // An edited config survives a reinstall, and with the token in place the steps
    // are not repeated.
    let edited = "{\"token_id\": \"felhom@pve!agent\", \"token_secret_file\": \"token\", \"node\": \"pve7\"}\n";
    std::fs::write(at("etc/felhom-agent/config.json"), edited).unwrap();
    std::fs::write(at("etc/felhom-agent/token"), "secret\n").unwrap();
    let said = dpkg(&["--install", deb.to_str().unwrap()]);
    assert!(!said.contains("installed, not running"), "{said}");
    assert_eq!(
        std::fs::read_to_string(at("etc/felhom-agent/config.json")).unwrap(),
        edited
    );

    // The agent's state, as a run would leave it.
    std::fs::create_dir_all(at("var/lib/felhom-agent")).unwrap();
    std::fs::write(at("var/lib/felhom-agent/journal"), "{}\n").unwrap();

    dpkg(&["--remove", "felhom-agent"]);
    assert!(!at("usr/bin/felhom-agent").exists());
    assert!(
        at("etc/felhom-agent/config.json").exists(),
        "remove keeps the config"
    );
    assert!(
        at("var/lib/felhom-agent/journal").exists(),
        "remove keeps the state"
    );

    let said = dpkg(&["--purge", "felhom-agent"]);
    assert!(
        !at("var/lib/felhom-agent").exists(),
        "purge removes the state"
    );
    assert!(!at("etc/felhom-agent/config.json").exists());
    assert!(
        at("etc/felhom-agent/token").exists(),
        "what a person wrote stays"
    );
    assert!(
        said.contains("/etc/felhom-agent keeps the files you wrote"),
        "{said}"
    );
    assert!(!dsh.exists());
}
