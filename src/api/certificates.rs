//! `/v1/apps/{app}/certificates`: Fly's Certificates resource. Hostnames are added to
//! an app with an ACME certificate (`/acme`) or one of the operator's (`/custom`); the
//! hostname then routes to the app. Shapes in `certificate_views`.

use super::ApiState;
use super::certificate_views::{self as views, CertificateDetail, DnsRecords, ListCertificates};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::openapi::{AppPath, CertificatePath, CertificatesListQuery};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// Fly's default page size for the list, and its largest.
const DEFAULT_LIST_LIMIT: usize = 25;
const MAX_LIST_LIMIT: usize = 500;
/// How long `check` waits for DNS to answer.
const DNS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

impl ApiState {
    /// The CNAME a hostname of `app` should point at.
    fn app_cname(&self, app: &str) -> Option<String> {
        let domain = self.certificates.domains().first()?;
        Some(format!("{app}.{domain}"))
    }

    fn certificate_detail(
        &self,
        app: &str,
        detail: &crate::certificates::Detail,
    ) -> CertificateDetail {
        views::detail(detail, self.app_cname(app))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The app's hostnames and their certificates, by hostname.
#[utoipa::path(get, path = "/apps/{app}/certificates", tag = "certificates", params(AppPath, CertificatesListQuery),
    responses((status = 200, body = ListCertificates), (status = 404, description = "no such app", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListCertificates>, ApiError> {
    let app = state.app(&app)?;
    let matching: Vec<_> = state
        .certificates
        .list(&app.record.name)
        .into_iter()
        .filter(|d| {
            let filter = query.filter.as_deref().unwrap_or_default();
            d.hostname.name.contains(filter)
        })
        .collect();
    let total_count = matching.len();
    let limit = query
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let page: Vec<_> = matching
        .iter()
        .filter(|d| query.cursor.as_ref().is_none_or(|c| d.hostname.name > *c))
        .take(limit + 1)
        .collect();
    let next_cursor = (page.len() > limit).then(|| page[limit - 1].hostname.name.clone());
    Ok(Json(ListCertificates {
        certificates: page.iter().take(limit).map(|d| views::summary(d)).collect(),
        total_count,
        next_cursor,
    }))
}

/// Fly's `CreateAcmeCertificateRequest`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct AcmeRequest {
    hostname: String,
}

/// Adds the hostname to the app and orders its certificate in the background.
#[utoipa::path(post, path = "/apps/{app}/certificates/acme", tag = "certificates", params(AppPath), request_body = AcmeRequest,
    responses((status = 201, body = CertificateDetail), (status = 400, description = "not a hostname", body = ErrorBody),
        (status = 409, description = "the hostname belongs to another app", body = ErrorBody),
        (status = 422, description = "no ACME on this edge, a wildcard, or the edge's own domain", body = ErrorBody),
        (status = 404, description = "no such app", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn request_acme(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<AcmeRequest>,
) -> Result<(StatusCode, Json<CertificateDetail>), ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.request_acme(name, &body.hostname)?;
    tracing::info!(app = %name, host = %detail.hostname.name, "ACME certificate requested");
    Ok((
        StatusCode::CREATED,
        Json(state.certificate_detail(name, &detail)),
    ))
}

/// Fly's `CreateCustomCertificateRequest` (`cert`/`key` as the generated clients send
/// them are accepted too).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CustomRequest {
    hostname: String,
    /// The PEM chain, leaf first.
    #[serde(alias = "cert")]
    fullchain: String,
    /// The PEM private key.
    #[serde(alias = "key")]
    private_key: String,
}

/// Adds the hostname to the app with the operator's own certificate (served over an
/// ACME one).
#[utoipa::path(post, path = "/apps/{app}/certificates/custom", tag = "certificates", params(AppPath), request_body = CustomRequest,
    responses((status = 201, body = CertificateDetail), (status = 400, description = "not a hostname", body = ErrorBody),
        (status = 409, description = "the hostname belongs to another app", body = ErrorBody),
        (status = 422, description = "the certificate is unusable, expired or for other names", body = ErrorBody),
        (status = 404, description = "no such app", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn import_custom(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<CustomRequest>,
) -> Result<(StatusCode, Json<CertificateDetail>), ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.import_custom(
        name,
        &body.hostname,
        &body.fullchain,
        &body.private_key,
    )?;
    tracing::info!(app = %name, host = %detail.hostname.name, "custom certificate imported");
    Ok((
        StatusCode::CREATED,
        Json(state.certificate_detail(name, &detail)),
    ))
}

/// One hostname: its certificates, the order's status and the CA's reasons.
#[utoipa::path(get, path = "/apps/{app}/certificates/{hostname}", tag = "certificates", params(CertificatePath),
    responses((status = 200, body = CertificateDetail), (status = 404, description = "no such app or hostname", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<Json<CertificateDetail>, ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.get(name, &hostname)?;
    Ok(Json(state.certificate_detail(name, &detail)))
}

/// Like `get`, with the hostname's DNS records as the edge resolves them; a hostname
/// still without an ACME certificate is retried now rather than after its backoff.
#[utoipa::path(post, path = "/apps/{app}/certificates/{hostname}/check", tag = "certificates", params(CertificatePath),
    responses((status = 200, body = CertificateDetail), (status = 404, description = "no such app or hostname", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn check(
    State(state): State<ApiState>,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<Json<CertificateDetail>, ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.check(name, &hostname)?;
    let mut shown = state.certificate_detail(name, &detail);
    shown.dns_records = Some(dns_records(&detail.hostname.name).await);
    Ok(Json(shown))
}

async fn dns_records(host: &str) -> DnsRecords {
    let lookup = tokio::net::lookup_host((host, 443));
    let addresses: Vec<IpAddr> = match tokio::time::timeout(DNS_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    };
    let of = |v4: bool| {
        addresses
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(ToString::to_string)
            .collect()
    };
    DnsRecords {
        a: of(true),
        aaaa: of(false),
        cname: Vec::new(),
        resolved_addresses: addresses.iter().map(ToString::to_string).collect(),
    }
}

/// Takes the hostname and every certificate of it away from the app.
#[utoipa::path(delete, path = "/apps/{app}/certificates/{hostname}", tag = "certificates", params(CertificatePath),
    responses((status = 204, description = "removed"), (status = 404, description = "no such app or hostname", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    state.certificates.remove(name, &hostname)?;
    tracing::info!(app = %name, host = %hostname, "hostname removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Stops ACME for the hostname; a custom certificate stays served.
#[utoipa::path(delete, path = "/apps/{app}/certificates/{hostname}/acme", tag = "certificates", params(CertificatePath),
    responses((status = 200, body = CertificateDetail), (status = 404, description = "no such app or hostname", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete_acme(
    State(state): State<ApiState>,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<Json<CertificateDetail>, ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.remove_acme(name, &hostname)?;
    Ok(Json(state.certificate_detail(name, &detail)))
}

/// Drops the custom certificate; an ACME one, if any, is served.
#[utoipa::path(delete, path = "/apps/{app}/certificates/{hostname}/custom", tag = "certificates", params(CertificatePath),
    responses((status = 200, body = CertificateDetail), (status = 404, description = "no such app or hostname", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete_custom(
    State(state): State<ApiState>,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<Json<CertificateDetail>, ApiError> {
    let app = state.app(&app)?;
    let name = &app.record.name;
    let detail = state.certificates.remove_custom(name, &hostname)?;
    Ok(Json(state.certificate_detail(name, &detail)))
}
