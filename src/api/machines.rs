//! `/v1/apps/{app}/machines`: create, list, get, start, stop, delete.

use super::ApiState;
use super::error::{ApiError, ApiJson};
use crate::machines::registry::{NewMachine, RegistryError};
use crate::machines::spec::MachineSpec;
use crate::machines::{EventSource, MachineRecord, MachineState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct CreateMachine {
    name: Option<String>,
    config: Option<Value>,
    region: Option<String>,
    #[serde(default)]
    skip_launch: bool,
}

pub async fn create(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<CreateMachine>,
) -> Result<Json<MachineRecord>, ApiError> {
    let app = state.app(&app)?;
    let config = body
        .config
        .ok_or_else(|| ApiError::bad_request("config is required (with config.image)"))?;
    let spec = MachineSpec::from_config(&config).map_err(ApiError::bad_request)?;
    state
        .supervisor
        .driver()
        .check_image(&spec.image)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let region = state.region(body.region.as_deref())?;
    let new = NewMachine {
        name: body.name,
        region,
        config,
        spec,
    };
    let machine = state
        .registry()
        .create_machine(&app, new)
        .map_err(|e| match e {
            RegistryError::NameTaken(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                    .with_code("name_taken")
            }
            RegistryError::AppGone(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other.to_string()),
        })?;
    tracing::info!(machine = %machine.id, app = %machine.app, "machine created");
    if !body.skip_launch {
        state.supervisor.begin_wake(&machine, EventSource::User);
    }
    Ok(Json(machine.snapshot()))
}

pub async fn list(
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<MachineRecord>>, ApiError> {
    let app = state.app(&app)?;
    Ok(Json(app.machines().iter().map(|m| m.snapshot()).collect()))
}

pub async fn get(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<MachineRecord>, ApiError> {
    Ok(Json(state.machine(&app, &id)?.snapshot()))
}

/// Starts a stopped machine in the background and says what it was. A started machine
/// answers 409, which callers that only want it running can ignore.
pub async fn start(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let previous = machine.state();
    match previous {
        MachineState::Started | MachineState::Starting => {
            return Err(ApiError::conflict(format!(
                "machine {id} is already {}",
                previous.as_str()
            )));
        }
        MachineState::Destroying | MachineState::Destroyed => {
            return Err(ApiError::conflict(format!(
                "machine {id} is {}",
                previous.as_str()
            )));
        }
        _ => {}
    }
    state.supervisor.begin_wake(&machine, EventSource::User);
    Ok(Json(
        json!({ "previous_state": previous.as_str(), "migrated": false, "new_host": "" }),
    ))
}

/// Stops a machine and waits until it has exited. Stopping a stopped machine is fine.
pub async fn stop(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine(&app, &id)?;
    state.supervisor.stop(&machine, EventSource::User).await;
    Ok(Json(json!({ "ok": true })))
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
pub async fn delete(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let running = matches!(
        machine.state(),
        MachineState::Started | MachineState::Starting
    );
    if running && !(query.force || query.kill) {
        return Err(ApiError::conflict(format!(
            "machine {id} is {}: stop it first or pass force=true",
            machine.state().as_str()
        )));
    }
    state.supervisor.destroy(&machine, EventSource::User).await;
    tracing::info!(machine = %id, "machine destroyed");
    Ok(Json(json!({ "ok": true })))
}
