//! Development certificates: a local CA kept in `certs/`, leaf certificates it signs,
//! and the self-signed certificate edgewake makes when no certificate covers its domains.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// File stem of the development CA in the certs dir (never served as a leaf).
pub const CA_STEM: &str = "edgewake-ca";

/// The file stem for a host name (`*` cannot comfortably live in a file name).
pub fn stem_for_host(host: &str) -> String {
    host.strip_prefix("*.")
        .map_or_else(|| host.to_string(), |rest| format!("_.{rest}"))
}

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate and its key, both PEM.
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "edgewake development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf_params(hosts: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("edgewake", |h| h.as_str()),
    );
    Ok(params)
}

/// A self-signed certificate for `hosts` (the fallback when nothing else covers them).
pub fn self_signed(hosts: &[String]) -> Result<PemPair, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = leaf_params(hosts)?.self_signed(&key)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), DevCertError> {
    std::fs::write(path, text).map_err(|source| DevCertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Private keys are readable by their owner only: anyone holding the CA key could
/// impersonate any site to a machine that trusts the CA.
fn write_key(path: &Path, text: &str) -> Result<(), DevCertError> {
    crate::files::write_private(path, text.as_bytes()).map_err(|source| DevCertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, DevCertError> {
    std::fs::read_to_string(path).map_err(|source| DevCertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The CA in `dir`, made on first use. Its certificate is what clients should trust.
fn load_or_create_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, PathBuf), DevCertError> {
    let (cert_path, key_path) = (
        dir.join(format!("{CA_STEM}.crt")),
        dir.join(format!("{CA_STEM}.key")),
    );
    let key = if key_path.exists() {
        KeyPair::from_pem(&read(&key_path)?)?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write(&cert_path, &cert.pem())?;
        write_key(&key_path, &key.serialize_pem())?;
        key
    };
    // Signing needs only the CA's name and key, which are the same every time.
    Ok((Issuer::new(ca_params()?, key), cert_path))
}

/// Writes a leaf certificate for each host into `dir` (`<host>.crt`/`.key`, a wildcard
/// `*.example.com` as `_.example.com`), signed by the development CA. Returns the CA's
/// certificate path.
pub fn generate(dir: &Path, hosts: &[String]) -> Result<PathBuf, DevCertError> {
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca, ca_path) = load_or_create_ca(dir)?;
    for host in hosts {
        let key = KeyPair::generate()?;
        let cert = leaf_params(std::slice::from_ref(host))?.signed_by(&key, &ca)?;
        let stem = stem_for_host(host);
        write(&dir.join(format!("{stem}.crt")), &cert.pem())?;
        write_key(&dir.join(format!("{stem}.key")), &key.serialize_pem())?;
    }
    Ok(ca_path)
}
