//! `[acme]`: certificates issued by an ACME CA (RFC 8555) for the hostnames added to
//! apps. No `[acme]` section: no ACME (certificates come from `certs/` and the API's
//! custom import only).

use super::ConfigErrors;
use base64::Engine;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// Let's Encrypt's production directory.
pub const LETSENCRYPT_URL: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETSENCRYPT_STAGING_URL: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// An `[acme]` section without `directory` uses Let's Encrypt.
pub const DEFAULT_ACME_DIRECTORY: AcmeDirectory = AcmeDirectory::LetsEncrypt;

/// Where certificates are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeDirectory {
    LetsEncrypt,
    LetsEncryptStaging,
    /// Any directory URL (https).
    Url(String),
}

impl AcmeDirectory {
    /// The named presets, as written in the config.
    const PRESETS: [(&'static str, AcmeDirectory); 2] = [
        ("letsencrypt", AcmeDirectory::LetsEncrypt),
        ("letsencrypt-staging", AcmeDirectory::LetsEncryptStaging),
    ];

    pub fn url(&self) -> &str {
        match self {
            AcmeDirectory::LetsEncrypt => LETSENCRYPT_URL,
            AcmeDirectory::LetsEncryptStaging => LETSENCRYPT_STAGING_URL,
            AcmeDirectory::Url(url) => url,
        }
    }

    /// A preset's name or an https URL.
    fn parse(text: &str) -> Result<AcmeDirectory, String> {
        if let Some((_, preset)) = Self::PRESETS.iter().find(|(name, _)| *name == text) {
            return Ok(preset.clone());
        }
        let is_url = text
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        match is_url {
            true => Ok(AcmeDirectory::Url(text.to_string())),
            false => Err(format!(
                "`{text}` is neither `letsencrypt`, `letsencrypt-staging` nor an https:// directory URL"
            )),
        }
    }
}

impl fmt::Display for AcmeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url())
    }
}

/// External account binding (RFC 8555 §7.3.4): some CAs (ZeroSSL, Google, private
/// ones) only open accounts bound to an account they know.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccount {
    pub kid: String,
    /// The MAC key, decoded from the base64url the CA hands out.
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret: it never reaches a log.
        f.debug_struct("ExternalAccount")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The `[acme]` section, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory: AcmeDirectory,
    /// The account's contact; the CA may write about expiring or revoked certificates.
    pub email: Option<String>,
    /// An extra CA certificate (PEM) trusted for the directory's own TLS, beside the
    /// system's roots (a test CA such as Pebble).
    pub directory_ca: Option<PathBuf>,
    /// Order a certificate during the TLS handshake for a hostname of an app that has
    /// none yet (rate limited; hostnames of no app never start an order).
    pub on_demand: bool,
    pub external_account: Option<ExternalAccount>,
}

/// `[acme]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAcme {
    directory: Option<String>,
    email: Option<String>,
    directory_ca: Option<PathBuf>,
    on_demand: Option<bool>,
    /// The key id of an external account binding.
    eab_kid: Option<String>,
    /// Its MAC key, base64url as the CA gives it.
    eab_hmac_key: Option<String>,
}

impl RawAcme {
    pub(super) fn into_acme(self, errors: &mut ConfigErrors) -> AcmeConfig {
        AcmeConfig {
            directory: errors.parsed(
                "acme.directory",
                self.directory,
                DEFAULT_ACME_DIRECTORY,
                AcmeDirectory::parse,
            ),
            email: self
                .email
                .filter(|e| !e.is_empty())
                .and_then(|e| errors.ok("acme.email", email(e))),
            directory_ca: self.directory_ca.filter(|p| !p.as_os_str().is_empty()),
            on_demand: self.on_demand.unwrap_or(false),
            external_account: external_account(self.eab_kid, self.eab_hmac_key, errors),
        }
    }
}

fn email(text: String) -> Result<String, String> {
    let valid = text
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        && !text.contains(char::is_whitespace);
    match valid {
        true => Ok(text),
        false => Err(format!("`{text}` is not an email address")),
    }
}

fn external_account(
    kid: Option<String>,
    key: Option<String>,
    errors: &mut ConfigErrors,
) -> Option<ExternalAccount> {
    match (kid, key) {
        (None, None) => None,
        (Some(kid), Some(key)) => {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key.trim_end_matches('='))
                .map_err(|e| format!("not base64url: {e}"));
            let hmac_key = errors.ok("acme.eab_hmac_key", decoded)?;
            Some(ExternalAccount { kid, hmac_key })
        }
        _ => {
            errors.push("`acme.eab_kid` and `acme.eab_hmac_key` go together: give both".into());
            None
        }
    }
}

impl AcmeConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        if let Some(path) = self.directory_ca.as_ref().filter(|p| !p.exists()) {
            errors.push(format!(
                "`acme.directory_ca`: {} does not exist",
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// No section means no ACME; an empty one means Let's Encrypt, on demand off.
    #[test]
    fn absent_empty_and_presets() {
        assert_eq!(Config::parse("").unwrap().acme, None);
        let acme = Config::parse("[acme]\n").unwrap().acme.unwrap();
        assert_eq!(acme.directory.url(), LETSENCRYPT_URL);
        assert!(!acme.on_demand && acme.email.is_none() && acme.directory_ca.is_none());
        let staging = Config::parse("[acme]\ndirectory = \"letsencrypt-staging\"\n").unwrap();
        assert_eq!(
            staging.acme.unwrap().directory.url(),
            LETSENCRYPT_STAGING_URL
        );
    }

    /// The issue's example section reads as written; a URL and a binding are typed.
    #[test]
    fn full_section() {
        let text = r#"
            [acme]
            directory = "https://127.0.0.1:14000/dir"
            email = "ops@example.com"
            directory_ca = ""
            on_demand = true
            eab_kid = "kid-1"
            eab_hmac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
        "#;
        let acme = Config::parse(text).unwrap().acme.unwrap();
        assert_eq!(
            acme.directory,
            AcmeDirectory::Url("https://127.0.0.1:14000/dir".into())
        );
        assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
        assert_eq!(acme.directory_ca, None);
        assert!(acme.on_demand);
        let eab = acme.external_account.unwrap();
        assert_eq!((eab.kid.as_str(), eab.hmac_key.len()), ("kid-1", 48));
        assert!(!format!("{eab:?}").contains("zWND"));
    }

    /// Every wrong key and value of the section is named, all in one report.
    #[test]
    fn every_problem_named() {
        let text = r#"
            [acme]
            directory = "http://ca.example/dir"
            email = "ops"
            directory_ca = "/nonexistent/pebble.pem"
            on_demnd = true
            eab_kid = "kid-1"
        "#;
        let errors = Config::parse(text).unwrap_err();
        let all = errors.to_string();
        for needle in [
            "`acme.on_demnd`",
            "`acme.directory`: `http://ca.example/dir`",
            "`acme.email`: `ops`",
            "`acme.directory_ca`",
            "`acme.eab_kid` and `acme.eab_hmac_key`",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(errors.problems().len(), 5, "{all}");
    }
}
