//! `…/machines/{id}/metadata`: the string map in `config.metadata`, read whole or by key,
//! changed by key or in bulk. Changes answer 204 and keep the machine's version.

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::lease::LeaseNonce;
use super::openapi::{MachinePath, MetadataPath};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest metadata key edgewake takes.
pub const MAX_KEY_LEN: usize = 128;

fn check_key(key: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid metadata key `{key}`: use 1-{MAX_KEY_LEN} letters, digits, `-`, `_`, `.` or `/`"
        )))
    }
}

/// The metadata object inside a config, created when absent.
fn metadata_mut(config: &mut Value) -> &mut Map<String, Value> {
    if !config["metadata"].is_object() {
        config["metadata"] = Value::Object(Map::new());
    }
    config["metadata"]
        .as_object_mut()
        .expect("just made an object")
}

/// All of a machine's metadata.
#[utoipa::path(get, operation_id = "Machines_show_metadata", path = "/apps/{app}/machines/{id}/metadata", tag = "metadata", params(MachinePath), responses((status = 200, description = "the metadata map", body = HashMap<String, String>), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let metadata = machine.record().config.get("metadata").cloned();
    Ok(Json(
        metadata
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new())),
    ))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetadataValue {
    value: String,
}

/// One key: `{"value": ...}`, or 404.
#[utoipa::path(get, operation_id = "Machines_get_metadata_key", path = "/apps/{app}/machines/{id}/metadata/{key}", tag = "metadata", params(MetadataPath), responses((status = 200, body = MetadataValue), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path((app, id, key)): Path<(String, String, String)>,
) -> Result<Json<MetadataValue>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let record = machine.record();
    let value = record.config["metadata"][&key]
        .as_str()
        .ok_or_else(|| ApiError::not_found(format!("machine {id} has no metadata key `{key}`")))?;
    Ok(Json(MetadataValue {
        value: value.to_string(),
    }))
}

/// Sets one key from `{"value": "..."}`.
#[utoipa::path(post, operation_id = "Machines_upsert_metadata", path = "/apps/{app}/machines/{id}/metadata/{key}", tag = "metadata", params(MetadataPath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = MetadataValue, responses((status = 204, description = "set"), (status = 400, body = ErrorBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn set(
    State(state): State<ApiState>,
    Path((app, id, key)): Path<(String, String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<MetadataValue>,
) -> Result<StatusCode, ApiError> {
    check_key(&key)?;
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    state.registry().edit(&machine, |record| {
        metadata_mut(&mut record.config).insert(key, Value::String(body.value));
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one key (a key that is not there is fine).
#[utoipa::path(delete, operation_id = "Machines_delete_metadata", path = "/apps/{app}/machines/{id}/metadata/{key}", tag = "metadata", params(MetadataPath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 204, description = "removed"), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path((app, id, key)): Path<(String, String, String)>,
    nonce: LeaseNonce,
) -> Result<StatusCode, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    state.registry().edit(&machine, |record| {
        metadata_mut(&mut record.config).remove(&key);
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Fly's bulk update: values set keys, `null`s remove them.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct BulkUpdate {
    #[schema(value_type = HashMap<String, Option<String>>)]
    metadata: BTreeMap<String, Option<String>>,
    /// When given, the machine must still be at this version (else 412).
    machine_version: Option<String>,
}

/// Sets and removes several keys at once, all or none (PATCH; PUT is the same call).
#[utoipa::path(patch, operation_id = "Machines_update_metadata", path = "/apps/{app}/machines/{id}/metadata", tag = "metadata", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = BulkUpdate, responses((status = 204, description = "updated"), (status = 400, body = ErrorBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 412, description = "machine_version is stale", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<BulkUpdate>,
) -> Result<StatusCode, ApiError> {
    update_all(&state, &app, &id, &nonce, body)
}

/// The bulk update as PUT (Fly names it apart, so its clients find it by name).
#[utoipa::path(put, operation_id = "Machines_update_metadata_put", path = "/apps/{app}/machines/{id}/metadata", tag = "metadata", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = BulkUpdate, responses((status = 204, description = "updated"), (status = 400, body = ErrorBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 412, description = "machine_version is stale", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn update_put(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<BulkUpdate>,
) -> Result<StatusCode, ApiError> {
    update_all(&state, &app, &id, &nonce, body)
}

fn update_all(
    state: &ApiState,
    app: &str,
    id: &str,
    nonce: &LeaseNonce,
    body: BulkUpdate,
) -> Result<StatusCode, ApiError> {
    body.metadata.keys().try_for_each(|k| check_key(k))?;
    let machine = state.machine_to_change(app, id, nonce)?;
    state.registry().edit(&machine, |record| {
        if let Some(expected) = body
            .machine_version
            .as_ref()
            .filter(|v| **v != record.instance_id)
        {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "machine {id} is at version {}, not {expected}",
                    record.instance_id
                ),
            ));
        }
        let metadata = metadata_mut(&mut record.config);
        for (key, value) in body.metadata {
            match value {
                Some(value) => metadata.insert(key, Value::String(value)),
                None => metadata.remove(&key),
            };
        }
        Ok(())
    })?;
    Ok(StatusCode::NO_CONTENT)
}
