//! `/v1/apps/{app}/machines`: create, list, get, start, stop, delete.

use super::ApiState;
use super::error::{ApiError, ApiJson, MaybeJson};
use crate::machines::driver::parse_signal;
use crate::machines::go_duration;
use crate::machines::registry::{NewMachine, RegistryError};
use crate::machines::spec::MachineSpec;
use crate::machines::{EventSource, MachineRecord, MachineState, StopRequest};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nix::sys::signal::Signal;
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
    let (config, spec) = MachineSpec::accept(config).map_err(ApiError::bad_request)?;
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
            other => ApiError::internal(other.to_string()),
        })?;
    tracing::info!(machine = %machine.id, app = %machine.app, "machine created");
    if !body.skip_launch {
        state.start_in_background(&machine, EventSource::User);
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
    state.start_in_background(&machine, EventSource::User);
    Ok(Json(
        json!({ "previous_state": previous.as_str(), "migrated": false, "new_host": "" }),
    ))
}

/// Fly's optional stop body: `{"signal": "SIGTERM", "timeout": "10s"}`.
#[derive(Deserialize, Default)]
pub struct StopBody {
    signal: Option<Value>,
    timeout: Option<Value>,
}

impl StopBody {
    fn request(&self, source: EventSource) -> Result<StopRequest, ApiError> {
        let mut request = StopRequest::new(source);
        request.signal = self.signal.as_ref().map(signal_from_json).transpose()?;
        request.timeout = self
            .timeout
            .as_ref()
            .map(|t| {
                go_duration::from_json(t)
                    .map_err(|e| ApiError::bad_request(format!("timeout: {e}")))
            })
            .transpose()?;
        Ok(request)
    }
}

/// A signal as Fly's clients send it: a name (`"SIGTERM"`) or a number (`9`).
pub fn signal_from_json(value: &Value) -> Result<Signal, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(ApiError::bad_request(format!("{other} is not a signal"))),
    };
    parse_signal(&text).map_err(ApiError::bad_request)
}

/// Stops a machine and waits until it has exited. Stopping a stopped machine is fine.
pub async fn stop(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    MaybeJson(body): MaybeJson<StopBody>,
) -> Result<Json<Value>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let request = body.unwrap_or_default().request(EventSource::User)?;
    state.supervisor.stop(&machine, request).await;
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
    state
        .registry()
        .remove_machine(&machine)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    state.supervisor.driver().forget(&machine.id).await;
    tracing::info!(machine = %id, "machine destroyed");
    Ok(Json(json!({ "ok": true })))
}
