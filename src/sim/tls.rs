//! The rustls server configuration for the HTTPS listener.

use super::model::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read {what} {}: {e}", path.display()),
        )
    })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Loads the certificate chain and key and builds a server config with the default
/// crypto provider. Errors name the file, never its contents.
pub(crate) fn server_config(files: &TlsFiles) -> io::Result<Arc<rustls::ServerConfig>> {
    let pem = read(&files.cert, "TLS certificate")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(format!(
                "bad certificate PEM in {}: {e}",
                files.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "no certificate in {}",
            files.cert.display()
        )));
    }
    let pem = read(&files.key, "TLS key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(format!(
            "bad private key PEM in {}: {e}",
            files.key.display()
        ))
    })?;
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("unusable certificate or key: {e}")))?;
    Ok(Arc::new(cfg))
}
