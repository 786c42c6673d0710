//! TLS termination: rustls (ring, the build's one crypto provider), TLS 1.2 and 1.3,
//! ALPN `h2` and `http/1.1`, certificates chosen by SNI — those the certificates API
//! installed (`managed`), then `certs/` (reloadable), then a self-signed fallback —
//! swapped without touching open connections. The ClientHello is read first: one that
//! offers `acme-tls/1` is an ACME validator and gets the TLS-ALPN-01 answer (`challenges`)
//! and nothing else; one for a name no certificate covers may wait for an on-demand
//! order. The handshake is bounded by a timeout in the connection task.

pub mod certs;
pub mod challenges;
pub mod dev_ca;
pub mod managed;

use crate::config::Config;
use certs::{CertError, SniResolver};
use challenges::{ACME_TLS_ALPN, Challenges};
use managed::Managed;
use rustls::ServerConfig;
use rustls::server::{Acceptor, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// Obtains a certificate while a handshake waits (ACME on demand). Called for a
/// ClientHello naming a host no certificate covers; returns when there is one, or when
/// the implementation gives up (its own bound): the handshake then goes on with
/// whatever covers the name by then.
#[async_trait::async_trait]
pub trait OnDemand: Send + Sync {
    async fn obtain(&self, host: &str);
}

/// How a TLS connection began.
pub enum Handshake {
    /// A client: HTTP (or a raw TCP service) follows.
    Client(Box<TlsStream<TcpStream>>),
    /// An ACME validator was shown its TLS-ALPN-01 certificate; the connection is over.
    AcmeValidation,
}

/// The HTTPS listener's TLS state.
pub struct Tls {
    config: Arc<ServerConfig>,
    resolver: Arc<SniResolver>,
    managed: Arc<Managed>,
    challenges: Arc<Challenges>,
    on_demand: OnceLock<Arc<dyn OnDemand>>,
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
        let managed = Arc::new(Managed::default());
        let resolver = Arc::new(SniResolver::new(store, managed.clone()));
        let server_config = Arc::new(server_config(resolver.clone(), &[b"h2", b"http/1.1"]));
        Ok(Tls {
            config: server_config,
            resolver,
            managed,
            challenges: Arc::new(Challenges::default()),
            on_demand: OnceLock::new(),
            certs_dir,
            fallback,
            fallback_hosts,
            handshake_timeout_ms: AtomicU64::new(millis(config.tls.handshake_timeout)),
        })
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

    /// Certificates installed at run time (they win over `certs/`).
    pub fn managed(&self) -> &Arc<Managed> {
        &self.managed
    }

    /// The ACME challenge answers the listeners serve.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Applies to handshakes that begin after it (a config reload).
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        // Relaxed: a lone value with nothing else published beside it.
        self.handshake_timeout_ms
            .store(millis(timeout), Ordering::Relaxed);
    }

    /// Lets ClientHellos for uncovered names wait for an on-demand certificate (set
    /// once, when ACME is configured with `on_demand`).
    pub fn set_on_demand(&self, on_demand: Arc<dyn OnDemand>) {
        let _ = self.on_demand.set(on_demand);
    }

    /// Whether a certificate of its own covers `host` (lower-case): one installed at
    /// run time or one from `certs/`, not the self-signed fallback.
    pub fn covers(&self, host: &str) -> bool {
        if self.managed.find(host).is_some() {
            return true;
        }
        let store = self.resolver.store();
        store
            .covering(host)
            .is_some_and(|cert| !Arc::ptr_eq(cert, &self.fallback))
    }

    /// The certificate a handshake for `host` gets now.
    pub fn certificate_for(&self, host: &str) -> Arc<CertifiedKey> {
        self.resolver.certificate(Some(host))
    }

    /// Reads the ClientHello, answers an ACME validator, waits for an on-demand
    /// certificate where one is wanted, then finishes the handshake. Reading the hello
    /// and finishing are each bounded by the handshake timeout; the on-demand wait by
    /// its own bound.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<Handshake> {
        let accepting = LazyConfigAcceptor::new(Acceptor::default(), stream);
        let start = self.bounded(accepting).await?;
        let hello = start.client_hello();
        let host = hello.server_name().map(str::to_ascii_lowercase);
        let validator = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validator {
            let answer = host
                .as_deref()
                .and_then(|h| self.challenges.alpn_certificate(h));
            let Some(answer) = answer else {
                return Err(std::io::Error::other(
                    "acme-tls/1 offered for no pending challenge",
                ));
            };
            let config = server_config(Arc::new(SingleCertAndKey::from(answer)), &[ACME_TLS_ALPN]);
            let mut stream = self.bounded(start.into_stream(Arc::new(config))).await?;
            // RFC 8737 §3: the validator closes after the handshake; nothing else is said.
            let _ = stream.shutdown().await;
            return Ok(Handshake::AcmeValidation);
        }
        if let (Some(host), Some(on_demand)) = (&host, self.on_demand.get())
            && !self.covers(host)
        {
            on_demand.obtain(host).await;
        }
        let stream = self.bounded(start.into_stream(self.config.clone())).await?;
        Ok(Handshake::Client(Box::new(stream)))
    }

    async fn bounded<T>(
        &self,
        step: impl Future<Output = std::io::Result<T>>,
    ) -> std::io::Result<T> {
        let timeout = Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Relaxed));
        match tokio::time::timeout(timeout, step).await {
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

fn server_config(resolver: Arc<dyn ResolvesServerCert>, alpn: &[&[u8]]) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
