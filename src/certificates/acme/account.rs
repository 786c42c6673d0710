//! The ACME account: opened at the directory on first use, its credentials (with its
//! private key) kept in `<data_dir>/acme/account.json`, readable by the owner only, and
//! reused after restarts. A different directory gets an account of its own.

use crate::config::AcmeConfig;
use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, AccountCredentials, BodyWrapper, ExternalAccountKey, NewAccount};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The account file, under the data dir.
pub const ACCOUNT_FILE: &str = "acme/account.json";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("acme.directory_ca {path}: {reason}")]
    DirectoryCa { path: PathBuf, reason: String },
    #[error("cannot set up TLS to the ACME directory: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the ACME directory {directory}: {source}")]
    Acme {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} cannot be read: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What the account file holds.
#[derive(Serialize, Deserialize)]
struct Kept {
    directory: String,
    credentials: AccountCredentials,
}

/// The account for the configured directory: the kept one, else a new one (kept).
pub async fn open(config: &AcmeConfig, data_dir: &Path) -> Result<Account, AccountError> {
    let path = data_dir.join(ACCOUNT_FILE);
    let directory = config.directory.url().to_string();
    let acme_error = |source| AccountError::Acme {
        directory: directory.clone(),
        source,
    };
    let builder = || http_client(config).map(Account::builder_with_http);
    if let Some(kept) = read(&path)?.filter(|k| k.directory == directory) {
        return builder()?
            .from_credentials(kept.credentials)
            .await
            .map_err(acme_error);
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let binding = config
        .external_account
        .as_ref()
        .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
    let (account, credentials) = builder()?
        .create(&new, directory.clone(), binding.as_ref())
        .await
        .map_err(acme_error)?;
    write(
        &path,
        &Kept {
            directory: directory.clone(),
            credentials,
        },
    )?;
    tracing::info!(%directory, "ACME account created, kept in {}", path.display());
    Ok(account)
}

fn read(path: &Path) -> Result<Option<Kept>, AccountError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AccountError::File {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| AccountError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

fn write(path: &Path, kept: &Kept) -> Result<(), AccountError> {
    let file_error = |source| AccountError::File {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(kept).map_err(|source| AccountError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        crate::files::dir_with_mode(dir, 0o700).map_err(file_error)?;
    }
    crate::files::write_private(path, &json).map_err(file_error)
}

/// HTTPS to the directory: the system's roots plus `directory_ca`, ring only.
fn http_client(config: &AcmeConfig) -> Result<Box<dyn instant_acme::HttpClient>, AccountError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match &config.directory_ca {
        Some(path) => extra_roots(path)?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, AccountError> {
    let problem = |reason: String| AccountError::DirectoryCa {
        path: path.to_path_buf(),
        reason,
    };
    let roots: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(e.to_string()))?;
    match roots.is_empty() {
        true => Err(problem("no certificate in the file".into())),
        false => Ok(roots),
    }
}
