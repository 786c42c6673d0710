//! Answers to the ACME challenges the edge is being validated with right now: HTTP-01
//! key authorizations by token (served on the HTTP listener) and TLS-ALPN-01
//! certificates by hostname (served on the HTTPS listener to a ClientHello that offers
//! only `acme-tls/1`). The ACME client publishes an answer for the length of one
//! validation; dropping the `Published` guard takes it down again.

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Where HTTP-01 validators fetch a token (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The answers being published.
#[derive(Debug, Default)]
pub struct Challenges {
    http01: RwLock<HashMap<String, String>>,
    tls_alpn01: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("cannot make the TLS-ALPN-01 certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot use the TLS-ALPN-01 key: {0}")]
    Key(#[from] rustls::Error),
}

impl Challenges {
    /// The key authorization for an HTTP-01 token, while it is published.
    pub fn key_authorization(&self, token: &str) -> Option<String> {
        read(&self.http01).get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for a hostname, while it is published.
    pub fn alpn_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.tls_alpn01).get(host).cloned()
    }

    /// Serves `key_authorization` at `HTTP01_PREFIX + token` until the guard drops.
    pub fn publish_http01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Published {
        write(&self.http01).insert(token.to_string(), key_authorization.to_string());
        Published {
            challenges: self.clone(),
            key: Key::Http01(token.to_string()),
        }
    }

    /// Serves a TLS-ALPN-01 certificate for `host`, proving `digest` (SHA-256 of the
    /// key authorization), until the guard drops.
    pub fn publish_tls_alpn01(
        self: &Arc<Self>,
        host: &str,
        digest: &[u8],
    ) -> Result<Published, ChallengeError> {
        let certificate = Arc::new(alpn_certificate(host, digest)?);
        write(&self.tls_alpn01).insert(host.to_string(), certificate);
        Ok(Published {
            challenges: self.clone(),
            key: Key::TlsAlpn01(host.to_string()),
        })
    }
}

/// The self-signed certificate of RFC 8737 §3: the hostname as its only SAN and the
/// critical `acmeIdentifier` extension holding the key authorization's digest.
fn alpn_certificate(host: &str, digest: &[u8]) -> Result<CertifiedKey, ChallengeError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = any_supported_type(&der)?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

#[derive(Debug)]
enum Key {
    Http01(String),
    TlsAlpn01(String),
}

/// A published answer; dropping it takes the answer down.
#[derive(Debug)]
pub struct Published {
    challenges: Arc<Challenges>,
    key: Key,
}

impl Drop for Published {
    fn drop(&mut self) {
        match &self.key {
            Key::Http01(token) => {
                write(&self.challenges.http01).remove(token);
            }
            Key::TlsAlpn01(host) => {
                write(&self.challenges.tls_alpn01).remove(host);
            }
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer is there while its guard lives, and gone after.
    #[test]
    fn answers_live_as_long_as_their_guard() {
        let challenges = Arc::new(Challenges::default());
        let http = challenges.publish_http01("tok", "tok.thumb");
        let alpn = challenges
            .publish_tls_alpn01("shop.example.test", &[7; 32])
            .unwrap();
        assert_eq!(
            challenges.key_authorization("tok").as_deref(),
            Some("tok.thumb")
        );
        assert!(challenges.alpn_certificate("shop.example.test").is_some());
        drop((http, alpn));
        assert_eq!(challenges.key_authorization("tok"), None);
        assert!(challenges.alpn_certificate("shop.example.test").is_none());
    }
}
