//! Tests for reading the token secret: the mode check, trimming, and that the
//! secret never shows up in an error or a Debug print.

use super::*;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &str = "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "felhom-config-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `name` with `content` and sets its permission bits to `mode`.
    fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A config in `dir` whose secret file is `name`.
fn config(dir: &TempDir, name: &str) -> Config {
    let text = format!(r#"{{"token_id": "agent@pve!tok", "token_secret_file": "{name}"}}"#);
    parse_with(&text, &dir.0.join("config.json"), || Ok("pve1".to_string())).unwrap()
}

/// Reads the secret and renders the outcome: `ok <secret>` or the error text, which
/// must never contain the secret.
fn read(dir: &TempDir, content: &str, mode: u32) -> String {
    dir.file("token", content, mode);
    let cfg = config(dir, "token");
    assert!(!format!("{cfg:?}").contains(SECRET));
    match cfg.fixed.token_secret() {
        Ok(secret) => {
            assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
            format!("ok {}", secret.expose())
        }
        Err(e) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(SECRET), "secret leaked: {text}");
            assert!(!text.contains("aaaa"), "secret leaked: {text}");
            e.to_string().replace(&dir.0.display().to_string(), "DIR")
        }
    }
}

#[test]
fn mode_and_content_are_checked() {
    let dir = TempDir::new();
    let refused = |mode: &str| {
        format!("token secret file DIR/token is readable or writable by group or others (mode {mode}): run chmod 600 DIR/token")
    };
    let cases: &[(&str, u32, String)] = &[
        (SECRET, 0o600, format!("ok {SECRET}")),
        (SECRET, 0o400, format!("ok {SECRET}")),
        (&format!("  {SECRET}\n\n"), 0o600, format!("ok {SECRET}")),
        (&format!("{SECRET}\r\n"), 0o600, format!("ok {SECRET}")),
        (SECRET, 0o640, refused("0640")),
        (SECRET, 0o604, refused("0604")),
        (SECRET, 0o620, refused("0620")),
        (SECRET, 0o602, refused("0602")),
        (SECRET, 0o644, refused("0644")),
        (SECRET, 0o4600, format!("ok {SECRET}")),
        (
            " \n\t\n",
            0o600,
            "token secret file DIR/token is empty: write the API token's secret into it".to_string(),
        ),
        (
            "",
            0o600,
            "token secret file DIR/token is empty: write the API token's secret into it".to_string(),
        ),
        (
            &format!("{SECRET}\n{SECRET}"),
            0o600,
            "token secret file DIR/token does not hold a single token secret (it has spaces, control characters or non-ASCII text inside, or is over 4096 bytes): it must hold only the API token's secret (a UUID)".to_string(),
        ),
        (
            &format!("agent@pve!tok {SECRET}"),
            0o600,
            "token secret file DIR/token does not hold a single token secret (it has spaces, control characters or non-ASCII text inside, or is over 4096 bytes): it must hold only the API token's secret (a UUID)".to_string(),
        ),
        (
            &"x".repeat(5000),
            0o600,
            "token secret file DIR/token does not hold a single token secret (it has spaces, control characters or non-ASCII text inside, or is over 4096 bytes): it must hold only the API token's secret (a UUID)".to_string(),
        ),
    ];
    for (content, mode, expected) in cases {
        assert_eq!(&read(&dir, content, *mode), expected, "mode {mode:o}");
    }
}

#[test]
fn missing_secret_file() {
    let dir = TempDir::new();
    let cfg = config(&dir, "nope");
    let err = cfg.fixed.token_secret().unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read token secret file {}/nope: ",
            dir.0.display()
        )),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

/// The secret itself (a UUID) where its file's path belongs is refused without being
/// repeated: a file by that name cannot be read, and its error would name it.
#[test]
fn a_secret_in_place_of_its_file_is_refused_unseen() {
    let refused = "expected the path of the file that holds the token's secret, found a value whose file name holds a UUID, which is what a secret looks like: write the secret into a file (chmod 600) and put that file's path here";
    let upper = SECRET.to_uppercase();
    for value in [
        SECRET.to_string(),
        format!(" {SECRET}\\n"),
        format!("agent@pve!tok={SECRET}"),
        format!("PVEAPIToken=agent@pve!tok={SECRET}"),
        format!("/etc/felhom-agent/{upper}"),
        format!("secrets/{SECRET}/"),
    ] {
        let text = format!(r#"{{"token_id": "agent@pve!tok", "token_secret_file": "{value}"}}"#);
        let err = parse_with(&text, Path::new("/etc/c.json"), || Ok("pve1".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("/etc/c.json:1:52: token_secret_file: {refused}"),
            "{value}"
        );
    }
    // A UUID in a directory name is not the secret; nor is something close to one.
    for value in [
        format!("/run/{SECRET}/token"),
        "9f1c2d3e-aaaa-4bbb-8ccc-0123456789a".to_string(),
        "9f1c2d3e_aaaa-4bbb-8ccc-0123456789ab".to_string(),
        "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ag".to_string(),
    ] {
        let text = format!(r#"{{"token_id": "agent@pve!tok", "token_secret_file": "{value}"}}"#);
        let cfg = parse_with(&text, Path::new("/etc/c.json"), || Ok("pve1".into())).unwrap();
        assert_eq!(cfg.fixed.token_secret_file, Path::new("/etc").join(&value));
    }
}
