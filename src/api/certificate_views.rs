//! Fly's JSON shapes for the Certificates resource (`CertificateSummary`,
//! `CertificateDetail`, `CertificateCheckResponse`), built from what edgewake knows of a
//! hostname. `status` says where the hostname stands: `issued` when a certificate is
//! served, else the ACME order's `pending`, `validating` or `failed` (the CA's reason in
//! `validation_errors`). ACME certificates are `source: "fly"`, as Fly calls them.

use crate::certificates::Detail;
use crate::certificates::acme::status::{AcmeStatus, ChallengeKind, Failure};
use crate::certificates::pem::Cert;
use serde::Serialize;
use std::time::SystemTime;

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One hostname in a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateSummary {
    hostname: String,
    status: &'static str,
    configured: bool,
    acme_requested: bool,
    acme_dns_configured: bool,
    acme_alpn_configured: bool,
    acme_http_configured: bool,
    ownership_txt_configured: bool,
    has_custom_certificate: bool,
    has_fly_certificate: bool,
    created_at: String,
    updated_at: String,
}

/// Fly's list answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListCertificates {
    pub certificates: Vec<CertificateSummary>,
    pub total_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Which challenges the edge answers for the hostname.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Validation {
    dns_configured: bool,
    alpn_configured: bool,
    http_configured: bool,
    ownership_txt_configured: bool,
}

/// A certificate of the hostname (or the ACME one still pending).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateEntry {
    /// `custom` (imported) or `fly` (ACME).
    source: &'static str,
    /// `active` when served or ready to be, `pending_validation` while ordered.
    status: &'static str,
    created_at: String,
    expires_at: Option<String>,
    issuer: Option<String>,
    issued: Vec<IssuedCertificate>,
    /// edgewake: the challenge that validated this ACME certificate, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    validated_by: Option<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedCertificate {
    r#type: &'static str,
    expires_at: String,
    certificate_authority: String,
}

/// What DNS must say for the CA to reach this edge.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DnsRequirements {
    a: Vec<String>,
    aaaa: Vec<String>,
    /// The app's own name on the edge's first domain.
    cname: Option<String>,
}

/// A failed attempt, in the CA's words.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ValidationError {
    code: String,
    message: String,
    remediation: String,
    timestamp: String,
}

/// Fly's `CertificateDetail`; `dns_records` only in `check`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateDetail {
    hostname: String,
    configured: bool,
    acme_requested: bool,
    status: &'static str,
    rate_limited_until: Option<String>,
    certificates: Vec<CertificateEntry>,
    validation: Validation,
    dns_requirements: DnsRequirements,
    validation_errors: Vec<ValidationError>,
    /// edgewake: when the next ACME order is due (a retry, or the renewal).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_records: Option<DnsRecords>,
}

/// The hostname as DNS resolves it from the edge.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DnsRecords {
    pub a: Vec<String>,
    pub aaaa: Vec<String>,
    pub cname: Vec<String>,
    pub resolved_addresses: Vec<String>,
}

/// The hostname's status word.
fn status(detail: &Detail) -> &'static str {
    if detail.held.served().is_some() {
        return AcmeStatus::Issued.as_str();
    }
    detail
        .acme
        .as_ref()
        .map_or(AcmeStatus::Pending, |s| s.status)
        .as_str()
}

pub fn summary(detail: &Detail) -> CertificateSummary {
    let h = &detail.hostname;
    CertificateSummary {
        hostname: h.name.clone(),
        status: status(detail),
        configured: detail.held.served().is_some(),
        acme_requested: h.acme_requested,
        acme_dns_configured: false,
        acme_alpn_configured: h.acme_requested,
        acme_http_configured: h.acme_requested,
        ownership_txt_configured: false,
        has_custom_certificate: detail.held.custom.is_some(),
        has_fly_certificate: detail.held.acme.is_some(),
        created_at: h.created_at.clone(),
        updated_at: h.updated_at.clone(),
    }
}

pub fn detail(detail: &Detail, cname: Option<String>) -> CertificateDetail {
    let h = &detail.hostname;
    let acme = detail.acme.as_ref();
    let failures = acme
        .map(|a| a.failures.iter().collect())
        .unwrap_or_default();
    CertificateDetail {
        hostname: h.name.clone(),
        configured: detail.held.served().is_some(),
        acme_requested: h.acme_requested,
        status: status(detail),
        rate_limited_until: None,
        certificates: entries(detail),
        validation: Validation {
            dns_configured: false,
            alpn_configured: h.acme_requested,
            http_configured: h.acme_requested,
            ownership_txt_configured: false,
        },
        dns_requirements: DnsRequirements {
            a: Vec::new(),
            aaaa: Vec::new(),
            cname,
        },
        validation_errors: validation_errors(&h.name, failures),
        next_attempt_at: acme.and_then(|a| a.next_attempt).map(rfc3339),
        dns_records: None,
    }
}

fn entries(detail: &Detail) -> Vec<CertificateEntry> {
    let mut entries = Vec::new();
    if let Some(cert) = &detail.held.custom {
        entries.push(entry("custom", cert, None));
    }
    let validated_by = detail
        .acme
        .as_ref()
        .and_then(|a| a.validated_by)
        .map(|k| k.as_str());
    match &detail.held.acme {
        Some(cert) => entries.push(entry("fly", cert, validated_by)),
        None if detail.hostname.acme_requested => entries.push(CertificateEntry {
            source: "fly",
            status: "pending_validation",
            created_at: detail.hostname.created_at.clone(),
            expires_at: None,
            issuer: None,
            issued: Vec::new(),
            validated_by: None,
        }),
        None => {}
    }
    entries
}

fn entry(
    source: &'static str,
    cert: &Cert,
    validated_by: Option<&'static str>,
) -> CertificateEntry {
    CertificateEntry {
        source,
        status: "active",
        created_at: rfc3339(cert.not_before),
        expires_at: Some(rfc3339(cert.not_after)),
        issuer: Some(cert.issuer.clone()),
        issued: vec![IssuedCertificate {
            r#type: cert.key_type,
            expires_at: rfc3339(cert.not_after),
            certificate_authority: cert.issuer.clone(),
        }],
        validated_by,
    }
}

fn validation_errors(host: &str, failures: Vec<&Failure>) -> Vec<ValidationError> {
    failures
        .into_iter()
        .map(|failure| ValidationError {
            code: failure.code.clone(),
            message: failure.message.clone(),
            remediation: format!(
                "make {host} resolve to this edge and its {} reachable from the CA ({} was tried)",
                match failure.challenge {
                    ChallengeKind::Http01 => "port 80",
                    ChallengeKind::TlsAlpn01 => "port 443",
                },
                failure.challenge.as_str()
            ),
            timestamp: rfc3339(failure.at),
        })
        .collect()
}
