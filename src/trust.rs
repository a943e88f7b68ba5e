//! Which certificate authorities the process trusts: the Proxmox CA for the API, and
//! the system roots (or `desired_ca_file`) for the desired-state source and the report
//! target, combined deliberately into one store.
//!
//! minreq (`https-rustls-probe`) builds one process-wide TLS config on the first https
//! request, from the certificates named by `SSL_CERT_FILE` (see [`crate::pve::tls`]).
//! Setting it replaces the system store, so there is one store for every connection,
//! read once. When nothing but the API is reached over https this module changes
//! nothing: `SSL_CERT_FILE` names the Proxmox CA (or stays unset when there is none).
//! When `desired_url` or `report_url` is https, it writes `<state_dir>/tls-trust.pem`:
//! the Proxmox CA (or the system roots when there is no Proxmox CA) followed by
//! `desired_ca_file` (or the system roots), and points `SSL_CERT_FILE` at it.
//!
//! The system roots are the bundle the process was started with (`SSL_CERT_FILE` when
//! set) or the distribution's bundle file (Debian's `/etc/ssl/certs/ca-certificates.crt`
//! first); a store given only as a directory (`SSL_CERT_DIR`) is not read.
//!
//! Limits, also in ARCHITECTURE.md: one store means the API would accept a certificate
//! from the source's CA and the source one from the Proxmox CA (host names are still
//! verified); setting `desired_ca_file` keeps the system roots out entirely. The store
//! is read once: a new CA, or a URL that turns https, takes effect at the next start.

use crate::config::{Fixed, Live};
use crate::log;
use crate::pve::ApiError;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the trust store could not be set up.
#[derive(Debug)]
pub enum TrustError {
    /// A CA file (`ca_file`, `desired_ca_file`, the system's bundle, or the combined
    /// bundle) is unusable, or the store was set too late (see
    /// [`crate::pve::trust_ca_file`]).
    Ca {
        from: &'static str,
        source: ApiError,
    },
    /// No system bundle was found for an https URL without `desired_ca_file`.
    NoSystemStore,
    /// The combined bundle could not be written.
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TrustError {
    /// Whether the config can fix it (exit code 2), rather than the machine.
    pub fn is_config(&self) -> bool {
        !matches!(self, TrustError::Write { .. })
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Ca { from, source } => write!(f, "{from}: {}", log::Chain(source)),
            TrustError::NoSystemStore => write!(
                f,
                "no system trust store found (looked for {}): set desired_ca_file to the CA of desired_url and report_url",
                SYSTEM_BUNDLES.join(", ")
            ),
            TrustError::Write { path, .. } => {
                write!(f, "cannot write the trust bundle {}", path.display())
            }
        }
    }
}

impl std::error::Error for TrustError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrustError::Write { source, .. } => Some(source),
            // Display already follows the CA error's chain.
            TrustError::Ca { .. } | TrustError::NoSystemStore => None,
        }
    }
}

/// Where the system's roots are, when the process was not given `SSL_CERT_FILE`: the
/// bundle files of Debian (and so Proxmox VE), Fedora and RHEL, openSUSE, Alpine.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A set of roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The certificates in a PEM file.
    File(PathBuf),
    /// The system's store.
    System,
}

/// What the process is to trust: for the API, and for the other https URLs if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPlan {
    pub api: Roots,
    /// `None`: no https URL but the API's.
    pub remote: Option<Roots>,
}

impl TrustPlan {
    /// The plan for a config: the API's CA (`ca_file`, else the PVE root CA if it
    /// exists, else the system's), and, when `desired_url` or `report_url` is https,
    /// `desired_ca_file` or the system's.
    pub fn of(fixed: &Fixed, live: &Live) -> TrustPlan {
        let https = |u: &Option<crate::remote::RemoteUrl>| u.as_ref().is_some_and(|u| u.is_https());
        TrustPlan {
            api: fixed.resolved_ca_file().map_or(Roots::System, Roots::File),
            remote: (https(&live.desired_url) || https(&live.report_url)).then(|| {
                fixed
                    .desired_ca_file
                    .clone()
                    .map_or(Roots::System, Roots::File)
            }),
        }
    }
}

/// The bundle file in `state_dir`.
pub fn bundle_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tls-trust.pem")
}

/// Sets the process up to trust what `plan` says (see the module doc). Call it from
/// `main`'s thread **before any other thread starts** (it changes the environment) and
/// **before the first https request**; `state_dir` is where a combined bundle goes.
pub fn install(plan: &TrustPlan, state_dir: &Path) -> Result<(), TrustError> {
    let parts: Vec<(&'static str, &Roots)> = match &plan.remote {
        None => vec![("ca_file", &plan.api)],
        Some(remote) if *remote == plan.api => vec![("ca_file", &plan.api)],
        Some(remote) => vec![("ca_file", &plan.api), ("desired_ca_file", remote)],
    };
    match parts.as_slice() {
        [(_, Roots::System)] => return Ok(()),
        [(from, Roots::File(ca))] => {
            return crate::pve::trust_ca_file(ca).map_err(|source| TrustError::Ca { from, source })
        }
        _ => {}
    }
    let mut text = String::new();
    for (key, roots) in &parts {
        let (from, file) = match roots {
            Roots::File(p) => (*key, p.clone()),
            Roots::System => ("the system roots", system_bundle()?),
        };
        let ca = |source| TrustError::Ca { from, source };
        let file = crate::pve::tls::check_ca_file(&file).map_err(ca)?;
        let pem = std::fs::read_to_string(&file).map_err(|e| {
            ca(ApiError::Config(format!(
                "cannot read ca file {}: {e}",
                file.display()
            )))
        })?;
        text.push_str(&format!("# {from}: {}\n", file.display()));
        text.push_str(pem.trim_end());
        text.push('\n');
    }
    let bundle = bundle_path(state_dir);
    write_bundle(&bundle, &text).map_err(|source| TrustError::Write {
        path: bundle.clone(),
        source,
    })?;
    log::debug("trusting a combined bundle", &[("file", &bundle.display())]);
    crate::pve::trust_ca_file(&bundle).map_err(|source| TrustError::Ca {
        from: "the combined bundle",
        source,
    })
}

/// The system's bundle file: `SSL_CERT_FILE` as the process got it, else the first of
/// [`SYSTEM_BUNDLES`] that exists.
fn system_bundle() -> Result<PathBuf, TrustError> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(TrustError::NoSystemStore)
}

/// Writes the bundle unless it already holds `text`. The temporary name is the
/// process's own, so a one-shot command started beside the service cannot mix its
/// bytes into the service's; the rename makes the new file whole at once.
fn write_bundle(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> crate::config::Config {
        crate::config::Config::parse(
            &format!(
                r#"{{"token_id": "agent@pve!reconciler", "token_secret_file": "t", "node": "pve1"{extra}}}"#
            ),
            Path::new("/etc/felhom-agent/config.json"),
        )
        .unwrap()
    }

    #[test]
    fn the_plan_adds_the_remote_roots_only_for_https_urls() {
        let plan = |extra: &str| {
            let c = config(extra);
            TrustPlan::of(&c.fixed, &c.live)
        };
        let pve = Roots::File("/etc/felhom-agent/pve.pem".into());
        let ca = r#", "ca_file": "pve.pem""#;
        assert_eq!(plan(ca).remote, None);
        assert_eq!(plan(ca).api, pve);
        let url = r#", "desired_url": "https://cp/d.json""#;
        assert_eq!(plan(&format!("{ca}{url}")).remote, Some(Roots::System));
        assert_eq!(
            plan(&format!(r#"{ca}{url}, "desired_ca_file": "cp.pem""#)).remote,
            Some(Roots::File("/etc/felhom-agent/cp.pem".into()))
        );
        // Plain http to this node needs no roots; a report over https does.
        let local = r#", "desired_url": "http://127.0.0.1:8080/d.json""#;
        assert_eq!(plan(&format!("{ca}{local}")).remote, None);
        assert_eq!(
            plan(&format!(r#"{ca}{local}, "report_url": "https://cp/r""#)).remote,
            Some(Roots::System)
        );
    }

    #[test]
    fn the_bundle_is_written_whole_and_not_rewritten() {
        let dir = std::env::temp_dir().join(format!("felhom-trust-{}", std::process::id()));
        let path = bundle_path(&dir);
        write_bundle(&path, "a\n").unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        write_bundle(&path, "a\n").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        write_bundle(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
