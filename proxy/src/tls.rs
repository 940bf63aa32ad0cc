//! TLS at the edge and to the origin (rustls, ring).
//!
//! - [`ServerTls`]: the public listener's certificate and key (PEM files), offered
//!   with ALPN `h2` and `http/1.1`, and reloaded when the files change: new
//!   handshakes get the new certificate, open connections keep theirs.
//! - [`origin_client_config`]: how waitroom checks an `https://` origin: the
//!   system's roots, or the operator's CA (`origin.tls_ca`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::shutdown::Shutdown;

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why a certificate, key or CA could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsError {
    /// The configuration key naming the file.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The public listener's certificate, reloaded when its files change.
#[derive(Clone, Debug)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Resolver>,
}

#[derive(Debug)]
struct Resolver {
    certified: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.certified
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

/// The later of the two files' modification times.
fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(cert).max(m(key))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError {
            key: "listen.tls_cert",
            reason: format!("{}: {e}", cert.display()),
        })?;
    if chain.is_empty() {
        return Err(TlsError {
            key: "listen.tls_cert",
            reason: format!("{}: no certificate in it", cert.display()),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError {
        key: "listen.tls_key",
        reason: format!("{}: {e}", key.display()),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError {
            key: "listen.tls_key",
            reason: format!("{}: {e}", key.display()),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError {
        key: "listen.tls_key",
        reason: format!("does not match listen.tls_cert: {e}"),
    })?;
    Ok(Arc::new(certified))
}

impl ServerTls {
    /// Loads the certificate chain and key (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamp = modified(cert, key);
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(Resolver {
                certified: RwLock::new((load(cert, key)?, stamp)),
            }),
        })
    }

    /// An acceptor offering HTTP/2 and HTTP/1.1, with the certificate in force at
    /// each handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Loads the files again if they changed; a broken pair is logged and the
    /// certificate in force kept. Returns whether a new one is in force.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = modified(&self.cert, &self.key);
        if stamp
            == self
                .current
                .certified
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
        {
            return false;
        }
        match load(&self.cert, &self.key) {
            Ok(certified) => {
                *self
                    .current
                    .certified
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = (certified, stamp);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Half-written files (the key before the certificate): try again at
                // the next change, keep serving the one in force.
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the one in force");
                self.current
                    .certified
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .1 = stamp;
                false
            }
        }
    }

    /// Checks the files every second until shutdown.
    pub async fn watch(self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

/// How an `https://` origin is checked: against `ca` (PEM) when given, otherwise
/// the system's roots (the versions offered are set by the connector).
pub fn origin_client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError {
                    key: "origin.tls_ca",
                    reason: format!("{}: {e}", path.display()),
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError {
                    key: "origin.tls_ca",
                    reason: format!("{}: no usable certificate in it", path.display()),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth())
}
