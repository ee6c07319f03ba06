//! PEM files → a rustls `ServerConfig` [T]. TLS 1.2 and 1.3 with the ring provider;
//! the ALPN list lives here and only here. Keys may be PKCS#8, PKCS#1 (RSA) or SEC1
//! (EC); rustls checks that the key belongs to the certificate.
//!
//! Used by `--check` too, so a bad key or certificate is found before anything starts.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The application protocols offered, in order of preference. A client whose list
/// shares none gets rustls's `no_application_protocol` alert.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Reads both PEM files (`pems.key`, `pems.cert`) and builds the server config;
/// errors name the file.
pub fn server_config(key_path: &Path, cert_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!(
            "pems.key {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "pems.key {} and pems.cert {} do not make a usable pair: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: rustls::pki_types::pem::Error| format!("pems.cert {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(format!(
            "pems.cert {}: no certificate found",
            path.display()
        ));
    }
    Ok(certs)
}
