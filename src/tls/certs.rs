//! Certificates by hostname: `certs/<host>.crt` + `certs/<host>.key` (PEM), where a
//! wildcard `*.example.com` is written `_.example.com`. SNI picks an exact name first,
//! then the wildcard of its parent, then the default certificate.

use super::dev_ca::{self, CA_STEM};
use super::managed::Managed;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pair { path: PathBuf, source: PairError },
    #[error("cannot read certs dir {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("cannot use the self-signed certificate: {0}")]
    SelfSignedPair(#[source] PairError),
}

/// Why a certificate and its key cannot serve together.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("bad certificate PEM: {0}")]
    CertificatePem(#[source] rustls_pki_types::pem::Error),
    #[error("no certificate in the file")]
    NoCertificate,
    #[error("bad private key PEM: {0}")]
    KeyPem(#[source] rustls_pki_types::pem::Error),
    #[error("unusable private key: {0}")]
    UnusableKey(#[source] rustls::Error),
    #[error("the key does not belong to the certificate: {0}")]
    KeyMismatch(#[source] rustls::Error),
}

/// Certificates by exact name and by wildcard parent, plus the default.
#[derive(Debug, Clone)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    /// The certificate for an SNI name: exact, then `*.parent`, then the default.
    pub fn find(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        name.map(str::to_ascii_lowercase)
            .and_then(|name| self.covering(&name).cloned())
            .unwrap_or_else(|| self.default.clone())
    }

    /// The certificate whose name covers `name` (lower-case), if any: exact, then
    /// `*.parent`; never the default.
    pub fn covering(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        if let Some(cert) = self.exact.get(name) {
            return Some(cert);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// Whether `<app>.<domain>` names have a certificate of their own.
    fn covers_subdomains_of(&self, domain: &str) -> bool {
        self.wildcard.contains_key(domain)
    }

    fn insert(&mut self, host: &str, cert: Arc<CertifiedKey>) {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_string(), cert),
            None => self.exact.insert(host.to_string(), cert),
        };
    }
}

/// A chain (leaf first) and its private key, ready to serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(PairError::CertificatePem)?;
    if chain.is_empty() {
        return Err(PairError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(PairError::KeyPem)?;
    let signing = any_supported_type(&key).map_err(PairError::UnusableKey)?;
    let certified = CertifiedKey::new(chain, signing);
    // A renewal caught half-written (new certificate, old key) must not replace a good pair.
    certified.keys_match().map_err(PairError::KeyMismatch)?;
    Ok(certified)
}

fn load_pair(crt: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let key = crt.with_extension("key");
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(crt)?, read(&key)?);
    certified_key(&cert_pem, &key_pem)
        .map(Arc::new)
        .map_err(|source| CertError::Pair {
            path: crt.to_path_buf(),
            source,
        })
}

/// Every `<host>.crt` with its `.key` in `dir` (a missing dir holds none).
fn load_dir(dir: &Path) -> Result<Vec<(String, Arc<CertifiedKey>)>, CertError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CertError::Dir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    let mut loaded = Vec::new();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
    {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if stem == CA_STEM {
            continue;
        }
        let host = stem
            .strip_prefix("_.")
            .map_or_else(|| stem.clone(), |rest| format!("*.{rest}"));
        loaded.push((host, load_pair(path)?));
    }
    Ok(loaded)
}

/// Loads the certs dir. Names among `fallback_hosts` that no file covers get the
/// self-signed `fallback` (made once by the caller and reused across reloads); they are
/// returned beside the store.
pub fn load_store(
    dir: &Path,
    fallback: &Arc<CertifiedKey>,
    fallback_hosts: &[String],
) -> Result<(CertStore, Vec<String>), CertError> {
    let loaded = load_dir(dir)?;
    let default = loaded
        .first()
        .map_or_else(|| fallback.clone(), |(_, c)| c.clone());
    let mut store = CertStore {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default,
    };
    for (host, cert) in loaded {
        store.insert(&host, cert);
    }
    let mut uncovered = Vec::new();
    for host in fallback_hosts {
        let covered = match host.strip_prefix("*.") {
            Some(parent) => store.covers_subdomains_of(parent),
            None => store.exact.contains_key(host),
        };
        if !covered {
            store.insert(host, fallback.clone());
            uncovered.push(host.clone());
        }
    }
    Ok((store, uncovered))
}

/// The names the self-signed fallback covers: localhost and every app domain, each
/// with its wildcard.
pub fn fallback_hosts(domains: &[String]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "*.localhost".to_string()];
    for domain in domains {
        for host in [domain.clone(), format!("*.{domain}")] {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    hosts
}

/// Makes the self-signed fallback certificate.
pub fn make_fallback(hosts: &[String]) -> Result<Arc<CertifiedKey>, CertError> {
    let pair = dev_ca::self_signed(hosts)?;
    let key = certified_key(pair.cert.as_bytes(), pair.key.as_bytes())
        .map_err(CertError::SelfSignedPair)?;
    Ok(Arc::new(key))
}

/// rustls's certificate resolver: the certificates the API installed (`managed`),
/// then the certs dir's store, which reloads replace whole.
#[derive(Debug)]
pub struct SniResolver {
    store: RwLock<Arc<CertStore>>,
    managed: Arc<Managed>,
}

impl SniResolver {
    pub fn new(store: CertStore, managed: Arc<Managed>) -> SniResolver {
        SniResolver {
            store: RwLock::new(Arc::new(store)),
            managed,
        }
    }

    pub fn replace(&self, store: CertStore) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
    }

    pub fn store(&self) -> Arc<CertStore> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The certificate served for an SNI name.
    pub fn certificate(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let name = name.map(str::to_ascii_lowercase);
        name.as_deref()
            .and_then(|n| self.managed.find(n))
            .unwrap_or_else(|| self.store().find(name.as_deref()))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certificate(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(host: &str) -> Arc<CertifiedKey> {
        make_fallback(&[host.to_string()]).unwrap()
    }

    /// Exact names beat wildcards; a wildcard serves one level of subdomain; anything
    /// else gets the default.
    #[test]
    fn exact_then_wildcard_then_default() {
        let (exact, wild, default) = (
            cert("api.example.com"),
            cert("*.example.com"),
            cert("localhost"),
        );
        let mut store = CertStore {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: default.clone(),
        };
        store.insert("api.example.com", exact.clone());
        store.insert("*.example.com", wild.clone());
        assert!(Arc::ptr_eq(&store.find(Some("API.example.com")), &exact));
        assert!(Arc::ptr_eq(&store.find(Some("shop.example.com")), &wild));
        assert!(Arc::ptr_eq(&store.find(Some("a.b.example.com")), &default));
        assert!(Arc::ptr_eq(&store.find(Some("other.org")), &default));
        assert!(Arc::ptr_eq(&store.find(None), &default));
    }

    /// Wildcard hosts are written `_.` in file names.
    #[test]
    fn wildcard_file_stems() {
        assert_eq!(dev_ca::stem_for_host("*.example.com"), "_.example.com");
        assert_eq!(dev_ca::stem_for_host("example.com"), "example.com");
    }

    /// A certificate with someone else's key is refused, so a reload keeps the old pair;
    /// generated keys are readable by their owner only.
    #[test]
    fn mismatched_key_is_refused_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        dev_ca::generate(
            dir.path(),
            &["a.example.com".into(), "b.example.com".into()],
        )
        .unwrap();
        let mode = std::fs::metadata(dir.path().join("a.example.com.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::copy(
            dir.path().join("b.example.com.key"),
            dir.path().join("a.example.com.key"),
        )
        .unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                CertError::Pair {
                    source: PairError::KeyMismatch(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    /// The names of the app domains no file covers get the fallback and are reported;
    /// a file's name or wildcard is never taken over by it; other names get the first
    /// file by name.
    #[test]
    fn fallback_covers_only_what_no_file_does() {
        let dir = tempfile::tempdir().unwrap();
        dev_ca::generate(
            dir.path(),
            &["api.example.com".into(), "*.localhost".into()],
        )
        .unwrap();
        let hosts = fallback_hosts(&["localhost".into(), "example.test".into()]);
        assert_eq!(
            hosts,
            ["localhost", "*.localhost", "example.test", "*.example.test"]
        );
        let fallback = make_fallback(&hosts).unwrap();
        let (store, uncovered) = load_store(dir.path(), &fallback, &hosts).unwrap();
        assert_eq!(uncovered, ["localhost", "example.test", "*.example.test"]);
        let is_fallback = |name| Arc::ptr_eq(&store.find(Some(name)), &fallback);
        for name in ["localhost", "example.test", "shop.example.test"] {
            assert!(is_fallback(name), "{name}");
        }
        for name in ["app.localhost", "api.example.com", "other.org"] {
            assert!(!is_fallback(name), "{name}");
        }
        let first_file = store.find(Some("app.localhost"));
        assert!(Arc::ptr_eq(&store.find(Some("other.org")), &first_file));
    }

    /// Without a certs dir every name gets the fallback; a certs dir that cannot be
    /// listed is an error naming it.
    #[test]
    fn missing_dir_serves_the_fallback_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = fallback_hosts(&["localhost".into()]);
        let fallback = make_fallback(&hosts).unwrap();
        let (store, uncovered) = load_store(&dir.path().join("none"), &fallback, &hosts).unwrap();
        assert_eq!(uncovered, hosts);
        assert!(Arc::ptr_eq(&store.find(Some("other.org")), &fallback));
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a dir").unwrap();
        let err = load_store(&file, &fallback, &hosts).unwrap_err();
        assert!(
            matches!(&err, CertError::Dir { path, .. } if *path == file),
            "{err}"
        );
    }

    /// The certificate a TLS client is given for `name` by a server resolving through
    /// `resolver`, the client trusting only `root` (None: the handshake failed).
    fn served_in_a_handshake(
        resolver: Arc<SniResolver>,
        name: &str,
        root: &CertifiedKey,
    ) -> Option<Vec<u8>> {
        use rustls::pki_types::ServerName;
        use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(root.cert[0].clone()).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let server_config = Arc::new(crate::tls::server_config(resolver, &[b"http/1.1"]));
        let mut server = ServerConnection::new(server_config).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut &bytes[..]).unwrap();
            server.process_new_packets().ok()?;
            bytes.clear();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut &bytes[..]).unwrap();
            client.process_new_packets().ok()?;
        }
        Some(client.peer_certificates()?[0].to_vec())
    }

    /// The resolver answers a real handshake with the certificate for the name the
    /// client sent: one installed at run time first, else the store's, and a replaced
    /// store serves the next handshake.
    #[test]
    fn handshakes_get_the_chosen_certificate() {
        let [one, two, three] =
            ["one", "two", "three"].map(|name| cert(&format!("{name}.example.test")));
        let store = |cert: &Arc<CertifiedKey>| CertStore {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: cert.clone(),
        };
        let managed = Arc::new(Managed::default());
        let resolver = Arc::new(SniResolver::new(store(&one), managed.clone()));
        let served = |name: &str, root: &Arc<CertifiedKey>| {
            let served = served_in_a_handshake(resolver.clone(), name, root);
            assert_eq!(served.as_deref(), Some(&root.cert[0][..]), "{name}");
        };
        served("one.example.test", &one);
        managed.install("two.example.test", two.clone());
        served("two.example.test", &two);
        resolver.replace(store(&three));
        served("three.example.test", &three);
        served("two.example.test", &two);
    }

    /// Generated development certificates load back from the directory, CA skipped.
    #[test]
    fn generated_certs_load() {
        let dir = tempfile::tempdir().unwrap();
        dev_ca::generate(dir.path(), &["*.localhost".into(), "example.com".into()]).unwrap();
        let hosts: Vec<String> = load_dir(dir.path())
            .unwrap()
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(hosts, ["*.localhost", "example.com"]);
    }
}
