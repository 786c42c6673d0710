//! A certificate chain and its key, read from PEM and checked: the key belongs to the
//! leaf, and what the API and renewal need is read from the leaf once (validity, names,
//! issuer, key type).

use crate::tls::certs::{PairError, certified_key};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why a certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error(transparent)]
    Pair(#[from] PairError),
    #[error("the certificate cannot be read: {0}")]
    X509(#[from] X509Error),
}

/// A usable certificate: what TLS serves, and the leaf's facts.
#[derive(Debug, Clone)]
pub struct Cert {
    pub certified: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The issuer's common name (or its whole name when it has none).
    pub issuer: String,
    /// DNS names of the leaf: its SANs, or its CN when it has no SAN.
    pub names: Vec<String>,
    /// `ecdsa`, `rsa` or `ed25519`, as Fly names key types.
    pub key_type: &'static str,
    /// The chain then the key, PEM: what is kept on disk.
    pub pem: String,
}

impl Cert {
    /// Reads a chain (leaf first) and its private key.
    pub fn parse(chain_pem: &str, key_pem: &str) -> Result<Cert, PemError> {
        let certified = certified_key(chain_pem.as_bytes(), key_pem.as_bytes())?;
        let key_type = match certified.key.algorithm() {
            rustls::SignatureAlgorithm::RSA => "rsa",
            rustls::SignatureAlgorithm::ED25519 => "ed25519",
            _ => "ecdsa",
        };
        let leaf = certified.cert[0].clone();
        let facts = Facts::of(&leaf)?;
        Ok(Cert {
            certified: Arc::new(certified),
            not_before: facts.not_before,
            not_after: facts.not_after,
            issuer: facts.issuer,
            names: facts.names,
            key_type,
            pem: format!("{}\n{}\n", chain_pem.trim_end(), key_pem.trim_end()),
        })
    }

    /// Reads what `pem` wrote (the chain, then the key, in one text).
    pub fn parse_kept(text: &str) -> Result<Cert, PemError> {
        let start = [
            "-----BEGIN PRIVATE KEY",
            "-----BEGIN EC PRIVATE",
            "-----BEGIN RSA",
        ]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len()); // no key: refused as a missing key below
        Cert::parse(&text[..start], &text[start..])
    }

    /// The leaf's DER (to compare certificates, and for ACME renewal information).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.certified.cert[0]
    }

    /// Whether the certificate serves `host`: a name of its own, or a wildcard one
    /// level up (`*.example.com` serves `shop.example.com` and the wildcard itself).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| {
            name == host
                || name.strip_prefix("*.").is_some_and(|parent| {
                    host.split_once('.').is_some_and(|(_, rest)| rest == parent)
                })
        })
    }
}

/// What is read from the leaf.
struct Facts {
    not_before: SystemTime,
    not_after: SystemTime,
    issuer: String,
    names: Vec<String>,
}

impl Facts {
    fn of(leaf: &CertificateDer<'_>) -> Result<Facts, PemError> {
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })?;
        let time = |seconds: i64| UNIX_EPOCH + Duration::from_secs(seconds.max(0).unsigned_abs());
        let validity = cert.validity();
        let common_name = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string)
        };
        let mut names: Vec<String> = match cert.subject_alternative_name()? {
            Some(san) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        if names.is_empty() {
            names.extend(common_name(cert.subject()).map(|cn| cn.to_ascii_lowercase()));
        }
        Ok(Facts {
            not_before: time(validity.not_before.timestamp()),
            not_after: time(validity.not_after.timestamp()),
            issuer: common_name(cert.issuer()).unwrap_or_else(|| cert.issuer().to_string()),
            names,
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A self-signed certificate for `names` and its key, PEM.
    pub fn pair(names: &[&str]) -> (String, String) {
        let pair = crate::tls::dev_ca::self_signed(
            &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (pair.cert, pair.key)
    }

    /// Names, wildcards and validity are read from the leaf; what is kept reads back.
    #[test]
    fn facts_and_coverage() {
        let (chain, key) = pair(&["shop.example.test", "*.example.org"]);
        let cert = Cert::parse(&chain, &key).unwrap();
        assert_eq!(cert.names, ["shop.example.test", "*.example.org"]);
        assert!(cert.covers("shop.example.test"));
        assert!(cert.covers("blog.example.org") && cert.covers("*.example.org"));
        assert!(!cert.covers("a.blog.example.org") && !cert.covers("example.test"));
        assert!(cert.not_before < cert.not_after);
        assert_eq!(cert.key_type, "ecdsa");
        let kept = Cert::parse_kept(&cert.pem).unwrap();
        assert_eq!(kept.leaf(), cert.leaf());
    }

    /// Someone else's key, an empty chain and garbage are refused with the reason.
    #[test]
    fn refusals() {
        let (chain, _) = pair(&["a.example.test"]);
        let (_, other_key) = pair(&["b.example.test"]);
        assert!(matches!(
            Cert::parse(&chain, &other_key),
            Err(PemError::Pair(PairError::KeyMismatch(_)))
        ));
        assert!(matches!(
            Cert::parse("", &other_key),
            Err(PemError::Pair(PairError::NoCertificate))
        ));
        assert!(matches!(
            Cert::parse(&chain, "not a key"),
            Err(PemError::Pair(PairError::KeyPem(_)))
        ));
    }
}
