//! Certificates installed at run time by the certificates API (custom imports and ACME
//! issues), by hostname: exact, or `*.parent` for a wildcard. They win over `certs/`.
//! Installing one swaps it for new handshakes only; open connections keep theirs.

use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct Managed {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Managed {
    /// Serves `cert` for `host` (`*.example.com` covers one level below it).
    pub fn install(&self, host: &str, cert: Arc<CertifiedKey>) {
        self.write().insert(host.to_string(), cert);
    }

    pub fn remove(&self, host: &str) {
        self.write().remove(host);
    }

    /// The certificate for an SNI name (lower-case): exact, then the wildcard of its
    /// parent.
    pub fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.read().unwrap_or_else(|p| p.into_inner());
        if let Some(cert) = certs.get(name) {
            return Some(cert.clone());
        }
        let (_, parent) = name.split_once('.')?;
        certs.get(&format!("*.{parent}")).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.certs.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::make_fallback;

    /// Exact names first, then a wildcard one level up; removal takes it away.
    #[test]
    fn exact_then_wildcard() {
        let managed = Managed::default();
        let (exact, wild) = (
            make_fallback(&["a.example.com".into()]).unwrap(),
            make_fallback(&["*.example.com".into()]).unwrap(),
        );
        managed.install("a.example.com", exact.clone());
        managed.install("*.example.com", wild.clone());
        assert!(Arc::ptr_eq(&managed.find("a.example.com").unwrap(), &exact));
        assert!(Arc::ptr_eq(&managed.find("b.example.com").unwrap(), &wild));
        assert!(managed.find("x.b.example.com").is_none());
        managed.remove("a.example.com");
        assert!(Arc::ptr_eq(&managed.find("a.example.com").unwrap(), &wild));
    }
}
