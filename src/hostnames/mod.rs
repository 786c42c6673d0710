//! Hostnames added to apps (Fly's custom domains): the index the proxy routes them by,
//! kept in the state database. A hostname belongs to at most one app; a wildcard
//! `*.example.com` routes the names one level below it.

pub mod store;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::path::Path;
use store::{Store, StoreError};

/// Longest DNS name (RFC 1035).
const MAX_HOSTNAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// A hostname of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname {
    /// Lower-case, without a trailing dot; `*.example.com` for a wildcard.
    pub name: String,
    pub app: String,
    /// Whether certificates are ordered for it by ACME.
    pub acme_requested: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl Hostname {
    pub fn is_wildcard(&self) -> bool {
        self.name.starts_with("*.")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    #[error("`{0}` is not a hostname: {1}")]
    Invalid(String, &'static str),
    #[error(
        "`{host}` is under the edge's own domain `{domain}`: apps are reached at <app>.{domain} already"
    )]
    EdgeDomain { host: String, domain: String },
    #[error("hostname {host} already belongs to app {app}")]
    Taken { host: String, app: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A hostname as written by a client, checked and normalised: lower-case DNS labels (the
/// first may be `*`), at least two, not an IP address, not under one of the edge's own
/// `domains` (those name apps already).
pub fn parse(written: &str, domains: &[String]) -> Result<String, HostnameError> {
    let name = written.trim().trim_end_matches('.').to_ascii_lowercase();
    let invalid = |why| Err(HostnameError::Invalid(written.to_string(), why));
    if name.is_empty() || name.len() > MAX_HOSTNAME {
        return invalid("empty or longer than 253 characters");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return invalid("an IP address");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return invalid("a domain needs at least two labels");
    }
    for (i, label) in labels.iter().enumerate() {
        if !(i == 0 && *label == "*" || is_label(label)) {
            return invalid("labels are letters, digits and inner dashes (a wildcard only first)");
        }
    }
    if let Some(domain) = domains
        .iter()
        .find(|d| name == **d || name.ends_with(&format!(".{d}")))
    {
        return Err(HostnameError::EdgeDomain {
            host: name,
            domain: domain.clone(),
        });
    }
    Ok(name)
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Every hostname by name, in memory for the proxy and in SQLite for restarts.
pub struct Hostnames {
    index: DashMap<String, Hostname>,
    store: Store,
}

impl Hostnames {
    /// Opens the table in the state database and loads it.
    pub fn open(path: &Path) -> Result<Hostnames, StoreError> {
        let store = Store::open(path)?;
        let index = store
            .all()?
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect();
        Ok(Hostnames { index, store })
    }

    /// The app `host` (lower-case) routes to: its own entry, else the wildcard of its
    /// parent.
    pub fn app_of(&self, host: &str) -> Option<String> {
        if let Some(entry) = self.index.get(host) {
            return Some(entry.app.clone());
        }
        let (_, parent) = host.split_once('.')?;
        self.index
            .get(&format!("*.{parent}"))
            .map(|e| e.app.clone())
    }

    pub fn get(&self, name: &str) -> Option<Hostname> {
        self.index.get(name).map(|e| e.clone())
    }

    /// An app's hostnames, by name.
    pub fn of_app(&self, app: &str) -> Vec<Hostname> {
        let mut found: Vec<Hostname> = self
            .index
            .iter()
            .filter(|e| e.app == app)
            .map(|e| e.clone())
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    pub fn all(&self) -> Vec<Hostname> {
        self.index.iter().map(|e| e.clone()).collect()
    }

    /// Adds `name` to `app`, or marks it for ACME if it is the app's already; another
    /// app's hostname is refused. Checked and written under the entry's lock, so two
    /// apps cannot both take one name.
    pub fn claim(&self, name: &str, app: &str, acme: bool) -> Result<Hostname, HostnameError> {
        let now = crate::machines::record::now_rfc3339();
        match self.index.entry(name.to_string()) {
            Entry::Occupied(mut entry) => {
                let held = entry.get_mut();
                if held.app != app {
                    return Err(HostnameError::Taken {
                        host: name.to_string(),
                        app: held.app.clone(),
                    });
                }
                let mut changed = held.clone();
                changed.acme_requested |= acme;
                changed.updated_at = now;
                self.store.save(&changed)?;
                *held = changed.clone();
                Ok(changed)
            }
            Entry::Vacant(entry) => {
                let host = Hostname {
                    name: name.to_string(),
                    app: app.to_string(),
                    acme_requested: acme,
                    created_at: now.clone(),
                    updated_at: now,
                };
                self.store.save(&host)?;
                entry.insert(host.clone());
                Ok(host)
            }
        }
    }

    /// Stops (or starts) ACME for a hostname, keeping it.
    pub fn set_acme(&self, name: &str, acme: bool) -> Result<Option<Hostname>, HostnameError> {
        let Some(mut entry) = self.index.get_mut(name) else {
            return Ok(None);
        };
        entry.acme_requested = acme;
        entry.updated_at = crate::machines::record::now_rfc3339();
        self.store.save(&entry)?;
        Ok(Some(entry.clone()))
    }

    /// Takes a hostname away from its app.
    pub fn remove(&self, name: &str) -> Result<Option<Hostname>, HostnameError> {
        self.store.delete(name)?;
        Ok(self.index.remove(name).map(|(_, h)| h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".into(), "apps.example.com".into()]
    }

    /// Names are normalised; IPs, single labels, bad labels and the edge's own
    /// domains are refused.
    #[test]
    fn names() {
        assert_eq!(
            parse("Shop.Example.TEST.", &domains()).unwrap(),
            "shop.example.test"
        );
        assert_eq!(
            parse("*.example.test", &domains()).unwrap(),
            "*.example.test"
        );
        for bad in [
            "",
            "shop",
            "127.0.0.1",
            "a..b",
            "-a.b",
            "a.*.b",
            "sh op.b",
            "a_b.c",
        ] {
            assert!(
                matches!(parse(bad, &domains()), Err(HostnameError::Invalid(..))),
                "{bad}"
            );
        }
        for edge in ["shop.localhost", "apps.example.com", "x.apps.example.com"] {
            assert!(
                matches!(
                    parse(edge, &domains()),
                    Err(HostnameError::EdgeDomain { .. })
                ),
                "{edge}"
            );
        }
    }

    /// A hostname belongs to one app; wildcards route one level below them; all of it
    /// survives a reopen.
    #[test]
    fn one_app_per_hostname_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let hostnames = Hostnames::open(&db).unwrap();
        hostnames.claim("shop.example.test", "shop", true).unwrap();
        hostnames.claim("*.example.org", "blog", false).unwrap();
        let taken = hostnames.claim("shop.example.test", "other", false);
        assert!(matches!(taken, Err(HostnameError::Taken { app, .. }) if app == "shop"));
        assert_eq!(hostnames.app_of("x.example.org").as_deref(), Some("blog"));
        assert_eq!(hostnames.app_of("a.x.example.org"), None);
        drop(hostnames);
        let reopened = Hostnames::open(&db).unwrap();
        assert_eq!(
            reopened.app_of("shop.example.test").as_deref(),
            Some("shop")
        );
        assert!(reopened.get("shop.example.test").unwrap().acme_requested);
        reopened.remove("shop.example.test").unwrap();
        assert_eq!(reopened.app_of("shop.example.test"), None);
    }
}
