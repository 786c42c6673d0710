//! `POST /v1/apps/{app}/machines/{id}/keepawake {"for": "5m"}`: the busy signal from
//! inside a machine. The machine's code calls it with the token in its own environment
//! (`EDGEWAKE_MACHINE_TOKEN`, at `EDGEWAKE_API_URL`), which is good for this call on
//! this machine only; the operator's token works too. The reaper then leaves the
//! machine running that long (at most `wake.keep_awake_max`).

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::openapi::MachinePath;
use crate::machines::{MachineState, go_duration};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

/// The call's body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct KeepAwake {
    /// How long to stay up, as `"5m"` or nanoseconds.
    #[serde(rename = "for")]
    #[schema(value_type = String)]
    period: serde_json::Value,
}

/// The answer: how long the machine is now kept up.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeptAwake {
    ok: bool,
    /// Milliseconds from now.
    for_ms: u64,
}

#[utoipa::path(post, path = "/v1/apps/{app}/machines/{id}/keepawake", tag = "lifecycle",
    security(("bearer" = [])), params(MachinePath), request_body = KeepAwake,
    responses((status = 200, body = KeptAwake), (status = 400, description = "not a duration", body = ErrorBody),
        (status = 401, description = "neither the machine's token nor the API's", body = ErrorBody),
        (status = 404, description = "no such app or machine", body = ErrorBody),
        (status = 409, description = "the machine is not started", body = ErrorBody)))]
pub async fn keep_awake(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<KeepAwake>,
) -> Result<Json<KeptAwake>, ApiError> {
    let presented = super::auth::bearer(&headers).unwrap_or("");
    let operator = crate::ids::constant_time_eq(presented.as_bytes(), state.token.as_bytes());
    let machine = state
        .registry()
        .machine(&app, &id)
        .filter(|m| operator || m.token_matches(presented))
        .ok_or_else(unauthorized)?;
    let period = go_duration::from_json(&body.period)
        .map_err(|e| ApiError::bad_request(format!("`for`: {e}")))?
        .min(state.keep_awake_max);
    if machine.state() != MachineState::Started {
        return Err(ApiError::conflict(format!(
            "machine {id} is {}, not started",
            machine.state().as_str()
        )));
    }
    state.supervisor.keep_awake(&machine, period, "api");
    let for_ms = machine.activity.kept_awake_for().as_millis() as u64;
    Ok(Json(KeptAwake { ok: true, for_ms }))
}

/// Same answer for a wrong token and an unknown machine: a machine's token says nothing
/// about which other machines exist.
fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized: the machine's EDGEWAKE_MACHINE_TOKEN or the API token is required",
    )
}
