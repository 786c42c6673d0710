//! Certificates for custom domains (Fly's Certificates resource): hostnames added to
//! apps, each with a custom certificate imported through the API and/or one ordered
//! from an ACME CA; the custom one is keeper, the ACME one is the fallback. Certificates
//! and keys live in the data dir (`disk`) and are loaded at start and served (`keeper`);
//! issuance, renewal and on-demand orders are `acme`'s.

pub mod acme;
pub mod disk;
pub mod keeper;
pub mod pem;

use crate::config::Config;
use crate::hostnames::{self, Hostname, HostnameError, Hostnames};
use crate::machines::Registry;
use crate::tls::Tls;
use acme::on_demand::OnDemandIssuer;
use acme::status::HostStatus;
use acme::timing::Backoff;
use acme::{Acme, AcmeParts};
use disk::Source;
use keeper::{Held, Keeper};
use pem::{Cert, PemError};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "ACME is not configured on this edge (no [acme] section): import a custom certificate instead"
    )]
    NoAcme,
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    #[error("hostname {host} not found in app {app}")]
    NotFound { host: String, app: String },
    #[error(
        "{0}: a wildcard certificate needs DNS-01 validation, which edgewake does not answer; import a custom certificate"
    )]
    Wildcard(String),
    #[error("the certificate is refused: {0}")]
    Pem(#[from] PemError),
    #[error("the certificate does not name {host} (it names {names})")]
    NotCovering { host: String, names: String },
    #[error("the certificate expired at {0}")]
    Expired(String),
    #[error("cannot keep the certificate in the data dir: {0}")]
    Disk(#[from] std::io::Error),
}

/// Everything known about one hostname.
#[derive(Debug, Clone)]
pub struct Detail {
    pub hostname: Hostname,
    pub held: Held,
    /// The ACME worker's state, when ACME is requested for it.
    pub acme: Option<HostStatus>,
}

/// The certificates service the API and the server use.
pub struct Certificates {
    hostnames: Arc<Hostnames>,
    keeper: Arc<Keeper>,
    acme: Option<Arc<Acme>>,
    domains: Vec<String>,
}

impl Certificates {
    /// Loads every hostname's kept certificates and serves them; with `[acme]`, starts
    /// ACME (each ACME hostname's worker: one whose certificate is kept waits for its
    /// renewal time, no order) and, with `on_demand`, its hook on the TLS listener.
    pub fn open(
        config: &Config,
        tls: &Arc<Tls>,
        hostnames: &Arc<Hostnames>,
        registry: Arc<Registry>,
        backoff: Backoff,
        cancel: &CancellationToken,
    ) -> Arc<Certificates> {
        let keeper = Arc::new(Keeper::new(tls.clone(), &config.data_dir));
        let acme = config.acme.as_ref().map(|acme_config| {
            let parts = AcmeParts {
                keeper: keeper.clone(),
                hostnames: hostnames.clone(),
                challenges: tls.challenges().clone(),
                cancel: cancel.clone(),
            };
            let acme = Acme::new(acme_config.clone(), config.data_dir.clone(), backoff, parts);
            if acme_config.on_demand {
                let domains = config.edge.domains.clone();
                let hook = OnDemandIssuer::new(acme.clone(), registry, hostnames.clone(), domains);
                tls.set_on_demand(Arc::new(hook));
            }
            tracing::info!(directory = %acme_config.directory, "ACME certificates for added hostnames");
            acme
        });
        let certificates = Certificates {
            hostnames: hostnames.clone(),
            keeper,
            acme,
            domains: config.edge.domains.clone(),
        };
        for host in certificates.hostnames.all() {
            certificates.keeper.load(&host.name);
            if host.acme_requested
                && let Some(acme) = &certificates.acme
            {
                acme.track(&host.name);
            }
        }
        Arc::new(certificates)
    }

    pub fn acme(&self) -> Option<&Arc<Acme>> {
        self.acme.as_ref()
    }

    /// The edge's own domains (apps are `<app>.<domain>`).
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// The app's hostnames.
    pub fn list(&self, app: &str) -> Vec<Detail> {
        let hostnames = self.hostnames.of_app(app);
        hostnames.into_iter().map(|h| self.detail(h)).collect()
    }

    pub fn get(&self, app: &str, host: &str) -> Result<Detail, CertificateError> {
        Ok(self.detail(self.owned(app, host)?))
    }

    /// Adds `host` to `app` (if it is not the app's yet) and orders its certificate.
    pub fn request_acme(&self, app: &str, host: &str) -> Result<Detail, CertificateError> {
        let name = hostnames::parse(host, &self.domains)?;
        let acme = self.acme.as_ref().ok_or(CertificateError::NoAcme)?;
        if name.starts_with("*.") {
            return Err(CertificateError::Wildcard(name));
        }
        let hostname = self.hostnames.claim(&name, app, true)?;
        acme.track(&name);
        Ok(self.detail(hostname))
    }

    /// Adds `host` to `app` with a certificate of the operator's: it must serve the
    /// name, not have expired, and carry its own key.
    pub fn import_custom(
        &self,
        app: &str,
        host: &str,
        fullchain: &str,
        private_key: &str,
    ) -> Result<Detail, CertificateError> {
        let name = hostnames::parse(host, &self.domains)?;
        let cert = Cert::parse(fullchain, private_key)?;
        if !cert.covers(&name) {
            return Err(CertificateError::NotCovering {
                host: name,
                names: cert.names.join(", "),
            });
        }
        if cert.not_after <= SystemTime::now() {
            let expired = humantime::format_rfc3339_seconds(cert.not_after).to_string();
            return Err(CertificateError::Expired(expired));
        }
        let hostname = self.hostnames.claim(&name, app, false)?;
        let hostnames = &self.hostnames;
        self.keeper.put(&name, Source::Custom, cert, || {
            hostnames.get(&name).is_some()
        })?;
        Ok(self.detail(hostname))
    }

    /// Asks for a fresh attempt when the hostname has no ACME certificate yet.
    pub fn check(&self, app: &str, host: &str) -> Result<Detail, CertificateError> {
        let hostname = self.owned(app, host)?;
        if let Some(acme) = &self.acme {
            acme.nudge(&hostname.name);
        }
        Ok(self.detail(hostname))
    }

    /// Takes the hostname and all its certificates away.
    pub fn remove(&self, app: &str, host: &str) -> Result<(), CertificateError> {
        let hostname = self.owned(app, host)?;
        self.forget(&hostname.name)
    }

    /// Stops ACME for the hostname and drops its ACME certificate; a custom one stays.
    pub fn remove_acme(&self, app: &str, host: &str) -> Result<Detail, CertificateError> {
        let hostname = self.owned(app, host)?;
        let hostname = self
            .hostnames
            .set_acme(&hostname.name, false)?
            .unwrap_or(hostname);
        if let Some(acme) = &self.acme {
            acme.untrack(&hostname.name);
        }
        self.keeper.take(&hostname.name, Source::Acme)?;
        Ok(self.detail(hostname))
    }

    /// Drops the custom certificate; the ACME one, if any, is keeper.
    pub fn remove_custom(&self, app: &str, host: &str) -> Result<Detail, CertificateError> {
        let hostname = self.owned(app, host)?;
        self.keeper.take(&hostname.name, Source::Custom)?;
        Ok(self.detail(hostname))
    }

    /// Forgets every hostname of a deleted app.
    pub fn remove_app(&self, app: &str) {
        for hostname in self.hostnames.of_app(app) {
            if let Err(e) = self.forget(&hostname.name) {
                tracing::error!(host = %hostname.name, %app, "cannot remove hostname: {e}");
            }
        }
    }

    fn forget(&self, host: &str) -> Result<(), CertificateError> {
        self.hostnames.remove(host)?;
        if let Some(acme) = &self.acme {
            acme.untrack(host);
        }
        self.keeper.forget(host)?;
        Ok(())
    }

    /// The hostname, if it is the app's.
    fn owned(&self, app: &str, host: &str) -> Result<Hostname, CertificateError> {
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        self.hostnames
            .get(&name)
            .filter(|h| h.app == app)
            .ok_or_else(|| CertificateError::NotFound {
                host: name,
                app: app.to_string(),
            })
    }

    fn detail(&self, hostname: Hostname) -> Detail {
        let acme = self
            .acme
            .as_ref()
            .filter(|_| hostname.acme_requested)
            .and_then(|acme| acme.status(&hostname.name));
        Detail {
            held: self.keeper.held(&hostname.name),
            hostname,
            acme,
        }
    }
}
