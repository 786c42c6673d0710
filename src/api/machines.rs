//! `/v1/apps/{app}/machines`: create, list, get, update, delete.

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::lease::{LeaseNonce, MAX_LEASE_TTL};
use super::lifecycle::OkBody;
use super::openapi::{AppPath, MachineDeleteQuery, MachinePath};
use crate::lifecycle::Update;
use crate::machines::registry::NewMachine;
use crate::machines::{EventSource, MachineRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

/// Fly's `CreateMachineRequest`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateMachine {
    /// Generated when absent or empty.
    #[serde(default, deserialize_with = "absent_if_empty")]
    name: Option<String>,
    #[schema(value_type = Object)]
    config: Option<Value>,
    region: Option<String>,
    #[serde(default)]
    skip_launch: bool,
    /// Create the machine cordoned: the proxy routes nothing to it.
    #[serde(default)]
    skip_service_registration: bool,
    /// Create the machine leased for this many seconds; the answer carries the `nonce`.
    lease_ttl: Option<u64>,
}

#[utoipa::path(post, operation_id = "Machines_create", path = "/apps/{app}/machines", tag = "machines", params(AppPath), request_body = CreateMachine, responses((status = 200, description = "the machine (plus `nonce` with `lease_ttl`)", body = MachineRecord), (status = 400, body = ErrorBody), (status = 422, description = "name taken", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<CreateMachine>,
) -> Result<Json<Value>, ApiError> {
    let app = state.app(&app)?;
    let (config, spec) = state.accept_config(body.config).await?;
    let region = state.region(body.region.as_deref())?;
    let new = NewMachine {
        name: body.name,
        region,
        config,
        spec,
        cordoned: body.skip_service_registration,
    };
    let machine = state.registry().create_machine(&app, new)?;
    tracing::info!(machine = %machine.id, app = %machine.app, "machine created");
    let nonce = match body.lease_ttl {
        Some(secs) => Some(take_lease(&machine, secs)?),
        None => None,
    };
    if !body.skip_launch {
        state.supervisor.begin_wake(&machine, EventSource::User);
    }
    let mut answer = serde_json::to_value(machine.snapshot()).expect("a record serializes");
    if let Some(nonce) = nonce {
        answer["nonce"] = nonce.into();
    }
    Ok(Json(answer))
}

/// The lease a create with `lease_ttl` takes; returns its nonce.
fn take_lease(machine: &crate::machines::Machine, secs: u64) -> Result<String, ApiError> {
    let ttl = std::time::Duration::from_secs(secs.max(1)).min(MAX_LEASE_TTL);
    let (lease, _) = machine
        .lease
        .acquire(ttl, "lease taken at creation", None)?;
    Ok(lease.nonce)
}

#[utoipa::path(get, operation_id = "Machines_show", path = "/apps/{app}/machines/{id}", tag = "machines", params(MachinePath), responses((status = 200, body = MachineRecord), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<MachineRecord>, ApiError> {
    Ok(Json(state.machine(&app, &id)?.snapshot()))
}

/// Fly's `UpdateMachineRequest`: a full config, plus guards.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateMachine {
    name: Option<String>,
    #[schema(value_type = Object)]
    config: Option<Value>,
    region: Option<String>,
    #[serde(default)]
    skip_launch: bool,
    skip_service_registration: Option<bool>,
    /// When given (not empty), the machine must still be at this version (else 412).
    #[serde(default, deserialize_with = "absent_if_empty")]
    current_version: Option<String>,
}

/// Fly takes an empty string for an optional field as the field left out.
fn absent_if_empty<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(de)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// Replaces a machine's config: a new version (`instance_id`); a running machine is
/// restarted on it, a stopped one started, unless `skip_launch`. `region` and `name`
/// cannot change (400); a stale `current_version` is 412.
#[utoipa::path(post, operation_id = "Machines_update", path = "/apps/{app}/machines/{id}", tag = "machines", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = UpdateMachine, responses((status = 200, description = "the machine at its new version", body = MachineRecord), (status = 400, description = "bad config, or region/name would change", body = ErrorBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 412, description = "current_version is stale", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<UpdateMachine>,
) -> Result<Json<MachineRecord>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    immutable("region", body.region.as_deref(), &machine.region)?;
    immutable("name", body.name.as_deref(), &machine.record().name)?;
    let (config, spec) = state.accept_config(body.config).await?;
    let update = Update {
        config,
        spec,
        expected_version: body.current_version,
        skip_launch: body.skip_launch,
        cordoned: body.skip_service_registration,
    };
    state.supervisor.update(&machine, update).await?;
    Ok(Json(machine.snapshot()))
}

/// A field an update may repeat but not change.
fn immutable(field: &str, given: Option<&str>, current: &str) -> Result<(), ApiError> {
    match given.filter(|g| !g.is_empty() && *g != current) {
        Some(given) => Err(ApiError::bad_request(format!(
            "{field} cannot change (it is `{current}`, not `{given}`)"
        ))),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
    /// fly-go's spelling of `force`.
    #[serde(default)]
    kill: bool,
}

/// Destroys a machine; a running one needs `force=true` (or fly-go's `kill=true`).
#[utoipa::path(delete, operation_id = "Machines_delete", path = "/apps/{app}/machines/{id}", tag = "machines", params(MachinePath, MachineDeleteQuery, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, body = OkBody), (status = 409, description = "running (pass force=true), or leased", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    nonce: LeaseNonce,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    if machine.state().is_running() && !(query.force || query.kill) {
        return Err(ApiError::conflict(format!(
            "machine {id} is {}: stop it first or pass force=true",
            machine.state().as_str()
        )));
    }
    state.supervisor.destroy(&machine, EventSource::User).await;
    tracing::info!(machine = %id, "machine destroyed");
    Ok(Json(json!({ "ok": true })))
}
