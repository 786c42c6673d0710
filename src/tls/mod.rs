//! TLS termination: rustls (ring, the build's one crypto provider), TLS 1.2 and 1.3,
//! ALPN `h2` and `http/1.1`, certificates chosen by SNI, reloaded on demand without
//! touching open connections, the handshake bounded by a timeout in the connection task.

pub mod certs;
pub mod dev_ca;

use crate::config::Config;
use certs::{CertError, SniResolver};
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The HTTPS listener's TLS state.
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    certs_dir: PathBuf,
    fallback: Arc<CertifiedKey>,
    fallback_hosts: Vec<String>,
    /// Milliseconds; a reload may change it (`set_handshake_timeout`).
    handshake_timeout_ms: AtomicU64,
}

impl Tls {
    /// Loads the certificates, making the self-signed fallback for names none covers.
    pub fn new(config: &Config) -> Result<Tls, CertError> {
        let fallback_hosts = certs::fallback_hosts(&config.edge.domains);
        let fallback = certs::make_fallback(&fallback_hosts)?;
        let certs_dir = config.tls.certs_dir.clone();
        let (store, uncovered) = certs::load_store(&certs_dir, &fallback, &fallback_hosts)?;
        log_fallback(&uncovered);
        let resolver = Arc::new(SniResolver::new(store));
        let acceptor = TlsAcceptor::from(Arc::new(server_config(resolver.clone())));
        Ok(Tls {
            acceptor,
            resolver,
            certs_dir,
            fallback,
            fallback_hosts,
            handshake_timeout_ms: AtomicU64::new(millis(config.tls.handshake_timeout)),
        })
    }

    /// Applies to handshakes that begin after it (a config reload).
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        // Relaxed: a lone value with nothing else published beside it.
        self.handshake_timeout_ms
            .store(millis(timeout), Ordering::Relaxed);
    }

    /// Reads the certs dir again. New connections get the new certificates; open ones
    /// keep theirs. On error the old certificates stay and the error says why.
    pub fn reload(&self) -> Result<(), CertError> {
        let (store, uncovered) =
            certs::load_store(&self.certs_dir, &self.fallback, &self.fallback_hosts)?;
        log_fallback(&uncovered);
        self.resolver.replace(store);
        tracing::info!("certificates reloaded from {}", self.certs_dir.display());
        Ok(())
    }

    /// Runs the handshake, giving up after the handshake timeout.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let timeout = Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Relaxed));
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn log_fallback(uncovered: &[String]) {
    if !uncovered.is_empty() {
        tracing::info!(
            "no certificate for {}: serving a self-signed one made at start",
            uncovered.join(", ")
        );
    }
}

fn server_config(resolver: Arc<SniResolver>) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}
