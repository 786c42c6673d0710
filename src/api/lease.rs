//! `…/machines/{id}/lease`: take, refresh (with the nonce header), show and release a
//! lease; and the nonce check every changing call makes.

use super::ApiState;
use super::error::{ApiError, ErrorBody, MaybeJson};
use super::openapi::{LeaseQuery, MachinePath};
use super::query::QueryPairs;
use crate::machines::Machine;
use crate::machines::lease::{LeaseError, LeaseView};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;

/// The header that proves a caller holds a machine's lease.
pub const NONCE_HEADER: &str = "fly-machine-lease-nonce";
/// A lease's length when the caller does not say.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The longest lease edgewake grants.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The caller's `fly-machine-lease-nonce`, if sent.
#[derive(Debug, Default, Clone)]
pub struct LeaseNonce(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LeaseNonce {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let nonce = parts
            .headers
            .get(NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        Ok(LeaseNonce(nonce))
    }
}

impl LeaseNonce {
    /// A change to `machine` may go ahead only without a live lease or with its nonce.
    pub fn allows(&self, machine: &Machine) -> Result<(), ApiError> {
        Ok(machine.lease.check(self.0.as_deref())?)
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LeaseRequest {
    /// Seconds.
    ttl: Option<u64>,
    description: Option<String>,
}

/// Fly's lease envelope: `{"status":"success","data":{...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LeaseResponse<T> {
    status: &'static str,
    data: T,
}

fn success<T>(data: T) -> Json<LeaseResponse<T>> {
    Json(LeaseResponse {
        status: "success",
        data,
    })
}

/// Takes a lease, or refreshes the caller's own (nonce header): 200 either way, as Fly
/// answers; 409 if someone else holds it.
#[utoipa::path(post, operation_id = "Machines_create_lease", path = "/apps/{app}/machines/{id}/lease", tag = "leases", params(MachinePath, LeaseQuery, ("fly-machine-lease-nonce" = Option<String>, Header, description = "refreshes the lease holding this nonce")), request_body(content = Option<LeaseRequest>, description = "optional"), responses((status = 200, description = "a new lease, or the caller's refreshed", body = LeaseResponse<LeaseView>), (status = 400, body = ErrorBody), (status = 409, description = "held by someone else", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn acquire(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    query: QueryPairs,
    nonce: LeaseNonce,
    MaybeJson(body): MaybeJson<LeaseRequest>,
) -> Result<Json<LeaseResponse<LeaseView>>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let body = body.unwrap_or_default();
    let secs = body.ttl.or(query.parsed("ttl")?);
    let ttl = secs.map_or(DEFAULT_LEASE_TTL, Duration::from_secs);
    if ttl.is_zero() || ttl > MAX_LEASE_TTL {
        return Err(ApiError::bad_request(format!(
            "ttl must be 1-{} seconds",
            MAX_LEASE_TTL.as_secs()
        )));
    }
    let description = body.description.unwrap_or_default();
    let (lease, _) = machine
        .lease
        .acquire(ttl, &description, nonce.0.as_deref())?;
    Ok(success(lease))
}

/// The live lease (its nonce withheld), or 404.
#[utoipa::path(get, operation_id = "Machines_show_lease", path = "/apps/{app}/machines/{id}/lease", tag = "leases", params(MachinePath), responses((status = 200, description = "the lease, its nonce withheld", body = LeaseResponse<LeaseView>), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<LeaseResponse<LeaseView>>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let lease = machine.lease.current().ok_or(LeaseError::NotHeld)?;
    Ok(success(lease))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Released {
    ok: bool,
}

/// Ends the lease; needs its nonce (409 without, 404 when there is none).
#[utoipa::path(delete, operation_id = "Machines_release_lease", path = "/apps/{app}/machines/{id}/lease", tag = "leases", params(MachinePath, ("fly-machine-lease-nonce" = String, Header, description = "the lease nonce")), responses((status = 200, body = LeaseResponse<Released>), (status = 409, description = "wrong or missing nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn release(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
) -> Result<Json<LeaseResponse<Released>>, ApiError> {
    let machine = state.machine(&app, &id)?;
    machine.lease.release(nonce.0.as_deref())?;
    Ok(success(Released { ok: true }))
}
