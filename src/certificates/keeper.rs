//! What each hostname holds — a custom import and an ACME issue, each kept on disk —
//! and which of them TLS serves: the custom one when there is one, the ACME one as the
//! fallback (as Fly does). A change swaps the served certificate for new handshakes;
//! open connections keep theirs.

use super::disk::{Disk, Source};
use super::pem::Cert;
use crate::tls::Tls;
use dashmap::DashMap;
use std::path::Path;
use std::sync::Arc;

/// A hostname's certificates.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub custom: Option<Cert>,
    pub acme: Option<Cert>,
}

impl Held {
    /// The one TLS serves.
    pub fn served(&self) -> Option<&Cert> {
        self.custom.as_ref().or(self.acme.as_ref())
    }

    fn slot(&mut self, source: Source) -> &mut Option<Cert> {
        match source {
            Source::Custom => &mut self.custom,
            Source::Acme => &mut self.acme,
        }
    }
}

pub struct Keeper {
    tls: Arc<Tls>,
    disk: Disk,
    held: DashMap<String, Held>,
}

impl Keeper {
    pub fn new(tls: Arc<Tls>, data_dir: &Path) -> Keeper {
        Keeper {
            tls,
            disk: Disk::new(data_dir),
            held: DashMap::new(),
        }
    }

    /// Loads what the data dir keeps for `host` and serves it. A file that cannot be
    /// used is logged and left alone (an ACME hostname then orders anew).
    pub fn load(&self, host: &str) {
        let mut held = Held::default();
        for source in [Source::Custom, Source::Acme] {
            let kept = self.disk.read(host, source).map_err(|e| e.to_string());
            match kept.and_then(|t| {
                t.map(|t| Cert::parse_kept(&t))
                    .transpose()
                    .map_err(|e| e.to_string())
            }) {
                Ok(cert) => *held.slot(source) = cert,
                Err(e) => tracing::error!(%host, "kept {source:?} certificate unusable: {e}"),
            }
        }
        self.held.insert(host.to_string(), held);
        self.serve(host);
    }

    /// A hostname's certificates now.
    pub fn held(&self, host: &str) -> Held {
        self.held.get(host).map(|h| h.clone()).unwrap_or_default()
    }

    /// Keeps `cert` as the hostname's certificate from `source` and serves what wins,
    /// if `wanted()` still says so when the hostname's entry is locked (a hostname
    /// removed meanwhile keeps nothing).
    pub fn put(
        &self,
        host: &str,
        source: Source,
        cert: Cert,
        wanted: impl FnOnce() -> bool,
    ) -> std::io::Result<bool> {
        let mut held = self.held.entry(host.to_string()).or_default();
        if !wanted() {
            drop(held);
            self.held
                .remove_if(host, |_, h| h.custom.is_none() && h.acme.is_none());
            return Ok(false);
        }
        self.disk.write(host, source, &cert.pem)?;
        *held.slot(source) = Some(cert);
        self.install(host, &held);
        Ok(true)
    }

    /// Drops the hostname's certificate from `source`; the other one, if any, is served.
    pub fn take(&self, host: &str, source: Source) -> std::io::Result<()> {
        let mut held = self.held.entry(host.to_string()).or_default();
        self.disk.remove(host, source)?;
        *held.slot(source) = None;
        self.install(host, &held);
        Ok(())
    }

    /// Drops everything the hostname holds, on disk and in TLS.
    pub fn forget(&self, host: &str) -> std::io::Result<()> {
        let entry = self.held.entry(host.to_string()).or_default();
        self.tls.managed().remove(host);
        let removed = self.disk.remove_host(host);
        drop(entry);
        self.held.remove(host);
        removed
    }

    fn serve(&self, host: &str) {
        if let Some(held) = self.held.get(host) {
            self.install(host, &held);
        }
    }

    fn install(&self, host: &str, held: &Held) {
        match held.served() {
            Some(cert) => self.tls.managed().install(host, cert.certified.clone()),
            None => self.tls.managed().remove(host),
        }
    }
}
