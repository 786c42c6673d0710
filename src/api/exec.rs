//! Fly's exec: run a command inside a started machine and get what it printed.

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::lease::LeaseNonce;
use super::openapi::MachinePath;
use crate::drivers::ExecOutput;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use std::time::Duration;

/// How long a command may run when the request does not say (Fly's default).
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a command may run.
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// Fly's exec request: `command` (argv), or the deprecated `cmd` (one string, run by
/// `sh -c`), and `timeout` in seconds.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ExecBody {
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

impl ExecBody {
    fn argv(self) -> Result<Vec<String>, ApiError> {
        match (self.command, self.cmd) {
            (Some(command), _) if !command.is_empty() => Ok(command),
            (_, Some(cmd)) if !cmd.trim().is_empty() => Ok(vec!["sh".into(), "-c".into(), cmd]),
            _ => Err(ApiError::bad_request("exec needs `command` (an argv list)")),
        }
    }
}

/// Runs a command in the machine, as the machine's own processes run (same limits and
/// namespaces in a sandbox), and returns its exit and output.
#[utoipa::path(post, operation_id = "Machines_exec", path = "/apps/{app}/machines/{id}/exec", tag = "lifecycle", params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "the lease nonce, when the machine is leased")), request_body = ExecBody, responses((status = 200, body = ExecOutput), (status = 400, body = ErrorBody), (status = 409, description = "not started, or leased", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn exec(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    nonce: LeaseNonce,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<Json<ExecOutput>, ApiError> {
    let machine = state.machine_to_change(&app, &id, &nonce)?;
    let timeout = body
        .timeout
        .filter(|t| *t > 0)
        .map_or(DEFAULT_EXEC_TIMEOUT, Duration::from_secs)
        .min(MAX_EXEC_TIMEOUT);
    let argv = body.argv()?;
    let output = state.supervisor.exec(&machine, &argv, timeout).await?;
    Ok(Json(output))
}
