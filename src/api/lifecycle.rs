//! Lifecycle calls on one machine: start, stop, suspend, restart, signal, cordon,
//! uncordon. Each honours the machine's lease.

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody, MaybeJson};
use super::lease::LeaseNonce;
use super::openapi::{MachinePath, RestartQuery};
use super::query::QueryPairs;
use crate::config::MAX_STOP_TIMEOUT;
use crate::lifecycle::StopRequest;
use crate::machines::go_duration;
use crate::machines::{EventSource, Machine, MachineState};
use crate::signals::parse_signal;
use axum::Json;
use axum::extract::{Path, State};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Fly's `{"ok": true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OkBody {
    ok: bool,
}

pub fn ok() -> Json<OkBody> {
    Json(OkBody { ok: true })
}

/// Fly's start answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    previous_state: &'static str,
    migrated: bool,
    new_host: &'static str,
}

impl ApiState {
    /// The machine, if the caller may change it (its lease allows).
    pub(super) fn machine_to_change(
        &self,
        app: &str,
        id: &str,
        nonce: &LeaseNonce,
    ) -> Result<Arc<Machine>, ApiError> {
        let machine = self.machine(app, id)?;
        nonce.allows(&machine)?;
        Ok(machine)
    }
}

/// Starts a stopped machine in the background and says what it was. A started machine
/// answers 409, which callers that only want it running can ignore.
#[utoipa::path(post, operation_id = "Machines_start", path = "/apps/{app}/machines/{id}/start", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, body = Started), (status = 409, description = "already started, or leased", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn start(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
) -> Result<Json<Started>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    let previous = machine.state();
    if matches!(
        previous,
        MachineState::Started
            | MachineState::Starting
            | MachineState::Destroying
            | MachineState::Destroyed
    ) {
        return Err(ApiError::conflict(format!(
            "machine {id} is already {}",
            previous.as_str()
        )));
    }
    state.supervisor.begin_wake(&machine, EventSource::User);
    Ok(Json(Started {
        previous_state: previous.as_str(),
        migrated: false,
        new_host: "",
    }))
}

/// Fly's optional stop body: `{"signal": "SIGTERM", "timeout": "10s"}`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct StopBody {
    /// A name (`"SIGTERM"`) or a number (`15`).
    #[schema(value_type = Option<String>, example = "SIGTERM")]
    signal: Option<Value>,
    /// `"10s"` or integer nanoseconds.
    #[schema(value_type = Option<String>, example = "10s")]
    timeout: Option<Value>,
}

fn timeout_from_json(value: &Value) -> Result<Duration, ApiError> {
    let timeout = go_duration::from_json(value)
        .map_err(|e| ApiError::bad_request(format!("timeout: {e}")))?;
    bounded(timeout)
}

/// A stop timeout the caller asked for, if within Fly's limit: nobody may make a stop
/// (and the call, and edgewake's shutdown) wait longer.
fn bounded(timeout: Duration) -> Result<Duration, ApiError> {
    if timeout > MAX_STOP_TIMEOUT {
        return Err(ApiError::bad_request(format!(
            "timeout: {timeout:?} is longer than the {MAX_STOP_TIMEOUT:?} a stop may wait"
        )));
    }
    Ok(timeout)
}

/// A signal as Fly's clients send it: a name (`"SIGTERM"`) or a number (`9`).
fn signal_from_json(value: &Value) -> Result<Signal, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(ApiError::bad_request(format!("{other} is not a signal"))),
    };
    parse_signal(&text).map_err(ApiError::bad_request)
}

/// Stops a machine and waits until it has exited. Stopping a stopped machine is fine.
#[utoipa::path(post, operation_id = "Machines_stop", path = "/apps/{app}/machines/{id}/stop", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body(content = Option<StopBody>, description = "optional"), responses((status = 200, body = OkBody), (status = 400, body = ErrorBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn stop(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    MaybeJson(body): MaybeJson<StopBody>,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    let body = body.unwrap_or_default();
    let mut request = StopRequest::new(EventSource::User);
    request.signal = body.signal.as_ref().map(signal_from_json).transpose()?;
    request.timeout = body.timeout.as_ref().map(timeout_from_json).transpose()?;
    state.supervisor.stop(&machine, request).await;
    Ok(ok())
}

/// Suspends a machine — here, a stop whose event says so.
#[utoipa::path(post, operation_id = "Machines_suspend", path = "/apps/{app}/machines/{id}/suspend", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, description = "stopped (edgewake has no snapshots); the event says so", body = OkBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn suspend(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    state.supervisor.suspend(&machine, EventSource::User).await;
    Ok(ok())
}

/// Restarts a started machine (`?signal=&timeout=&force_stop=`); answers once it runs
/// again. A machine that is not started is a 409.
#[utoipa::path(post, operation_id = "Machines_restart", path = "/apps/{app}/machines/{id}/restart", tag = "lifecycle", params(MachinePath, RestartQuery, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, body = OkBody), (status = 400, body = ErrorBody), (status = 409, description = "not started, or leased", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn restart(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    query: QueryPairs,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    let mut request = StopRequest::new(EventSource::User);
    if let Some(signal) = query.get("signal") {
        request.signal = Some(parse_signal(signal).map_err(ApiError::bad_request)?);
    }
    if let Some(timeout) = query.get("timeout") {
        // Whole seconds, or a Go duration.
        request.timeout = Some(match timeout.parse::<u64>() {
            Ok(secs) => bounded(Duration::from_secs(secs))?,
            Err(_) => timeout_from_json(&Value::from(timeout))?,
        });
    }
    if query.flag("force_stop")? {
        request.signal = Some(Signal::SIGKILL);
    }
    state.supervisor.restart(&machine, request).await?;
    Ok(ok())
}

/// Fly's `SignalRequest`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignalBody {
    /// A name (`"SIGHUP"`) or a number (`9`).
    #[schema(value_type = String, example = "SIGHUP")]
    signal: Value,
}

/// Sends a signal (`{"signal":"SIGHUP"}` or `{"signal":9}`) to a running machine.
#[utoipa::path(post, operation_id = "Machines_signal", path = "/apps/{app}/machines/{id}/signal", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = SignalBody, responses((status = 200, body = OkBody), (status = 400, body = ErrorBody), (status = 409, description = "not running, or leased", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn signal(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<SignalBody>,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    let signal = signal_from_json(&body.signal)?;
    state.supervisor.signal(&machine, signal).await?;
    Ok(ok())
}

/// Cordons a machine: the proxy routes nothing to it until it is uncordoned.
#[utoipa::path(post, operation_id = "Machines_cordon", path = "/apps/{app}/machines/{id}/cordon", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, body = OkBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn cordon(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    state.registry().set_cordoned(&machine, true);
    Ok(ok())
}

/// Lets the proxy route to a cordoned machine again.
#[utoipa::path(post, operation_id = "Machines_uncordon", path = "/apps/{app}/machines/{id}/uncordon", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), responses((status = 200, body = OkBody), (status = 409, description = "leased by someone else: send its fly-machine-lease-nonce", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn uncordon(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
) -> Result<Json<OkBody>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    state.registry().set_cordoned(&machine, false);
    Ok(ok())
}
