//! Which CA the client trusts. TLS is always verified; there is no switch to turn
//! verification off.
//!
//! minreq (`https-rustls-probe`) builds one process-wide rustls config, lazily, on the
//! first https request, from the platform verifier; on Linux that reads the
//! certificates named by `SSL_CERT_FILE`. So the only way to trust the PVE cluster CA
//! is to point `SSL_CERT_FILE` at it before that first request, which is what
//! [`trust_ca_file`] does. The consequence: the CA is read once per process. A CA
//! change (rare: the PVE CA lasts ten years) needs an agent restart.

use super::error::ApiError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The PVE cluster CA, present on every node (docs/proxmox-api.md §1.5).
pub const DEFAULT_CA_FILE: &str = "/etc/pve/pve-root-ca.pem";

/// Set by the client just before its first https request; after that, changing
/// `SSL_CERT_FILE` would have no effect.
static HTTPS_USED: AtomicBool = AtomicBool::new(false);

pub(crate) fn note_https_use() {
    HTTPS_USED.store(true, Ordering::Relaxed);
}

/// [`DEFAULT_CA_FILE`] when it exists (the config names no CA file).
pub fn default_ca_file() -> Option<PathBuf> {
    let p = PathBuf::from(DEFAULT_CA_FILE);
    p.is_file().then_some(p)
}

/// Makes the client trust exactly the certificates in the PEM file at `path`
/// (`SSL_CERT_FILE` is set to it and `SSL_CERT_DIR` is removed).
///
/// Call it from `main`, **before any thread starts** (it changes the environment,
/// which is not thread-safe) and **before the first https request** (minreq reads
/// the trust store once). Fails with [`ApiError::Config`] when the file is not
/// readable PEM with at least one certificate, or when an https request was already
/// made.
pub fn trust_ca_file(path: &Path) -> Result<(), ApiError> {
    let path = check_ca_file(path)?;
    if HTTPS_USED.load(Ordering::Relaxed) {
        return Err(ApiError::Config(
            "the ca file must be set before the first https request".into(),
        ));
    }
    std::env::set_var("SSL_CERT_FILE", &path);
    std::env::remove_var("SSL_CERT_DIR");
    Ok(())
}

/// Checks that `path` is a readable PEM file holding at least one certificate and
/// returns its absolute path.
pub fn check_ca_file(path: &Path) -> Result<PathBuf, ApiError> {
    let shown = path.display();
    let text = std::fs::read(path)
        .map_err(|e| ApiError::Config(format!("cannot read ca file {shown}: {e}")))?;
    let text = String::from_utf8_lossy(&text);
    let count = count_pem_certificates(&text)
        .map_err(|what| ApiError::Config(format!("ca file {shown} is not valid pem: {what}")))?;
    if count == 0 {
        return Err(ApiError::Config(format!(
            "ca file {shown} holds no certificate"
        )));
    }
    std::fs::canonicalize(path)
        .map_err(|e| ApiError::Config(format!("cannot resolve ca file {shown}: {e}")))
}

/// Counts the `CERTIFICATE` blocks, checking each is closed and holds base64.
fn count_pem_certificates(text: &str) -> Result<usize, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut count = 0;
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        let body_start = i + BEGIN.len();
        let len = rest[body_start..]
            .find(END)
            .ok_or("a certificate block is not closed")?;
        let body = &rest[body_start..body_start + len];
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let ok = !b64.is_empty()
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !ok {
            return Err("a certificate block does not hold base64".into());
        }
        count += 1;
        rest = &rest[body_start + len + END.len()..];
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pem_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nMIIB\nAbc+/=\n-----END CERTIFICATE-----\n";
        assert_eq!(count_pem_certificates(one), Ok(1));
        assert_eq!(count_pem_certificates(&format!("junk\n{one}{one}")), Ok(2));
        assert_eq!(count_pem_certificates("nothing here"), Ok(0));
        assert!(count_pem_certificates("-----BEGIN CERTIFICATE-----\nMIIB\n").is_err());
        assert!(count_pem_certificates(
            "-----BEGIN CERTIFICATE-----\n*!*\n-----END CERTIFICATE-----"
        )
        .is_err());
        assert!(
            count_pem_certificates("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----")
                .is_err()
        );
    }

    #[test]
    fn check_ca_file_reports_unreadable_and_non_pem_files() {
        let dir = std::env::temp_dir().join(format!("felhom-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();

        assert_eq!(check_ca_file(&good).unwrap(), good.canonicalize().unwrap());
        let e = check_ca_file(&bad).unwrap_err();
        assert!(
            matches!(&e, ApiError::Config(m) if m.contains("no certificate")),
            "{e}"
        );
        let e = check_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(
            matches!(&e, ApiError::Config(m) if m.starts_with("cannot read ca file")),
            "{e}"
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
