//! `GET …/machines/{id}/wait` (a long poll on the machine's state channel) and
//! `GET …/machines/{id}/events`.

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::openapi::{EventsQuery, MachinePath, WaitQuery};
use super::query::QueryPairs;
use crate::machines::go_duration;
use crate::machines::record::MachineEvent;
use crate::machines::wait::{self, Goal};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use std::time::Duration;

/// Fly's bounds on `wait?timeout=` (whole seconds), and its default.
pub const WAIT_TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const WAIT_TIMEOUT_MAX: Duration = Duration::from_secs(60);
pub const WAIT_TIMEOUT_DEFAULT: Duration = WAIT_TIMEOUT_MAX;
/// `events?limit=`: Fly's default and its maximum.
pub const EVENTS_LIMIT_DEFAULT: usize = 20;
pub const EVENTS_LIMIT_MAX: usize = 50;

/// What a wait asks for.
#[derive(Debug)]
struct WaitRequest {
    goals: Vec<Goal>,
    timeout: Duration,
    version: Option<String>,
    from_event: Option<String>,
}

impl WaitRequest {
    fn parse(query: &QueryPairs) -> Result<WaitRequest, ApiError> {
        let mut goals = query
            .list("state")
            .into_iter()
            .map(|s| s.parse::<Goal>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        if goals.is_empty() {
            goals.push(Goal::Started);
        }
        // Fly takes an empty value as none given.
        let given = |key| query.get(key).filter(|v| !v.is_empty());
        let version = given("version").or(given("instance_id"));
        if goals.contains(&Goal::Stopped) && version.is_none() {
            return Err(invalid(
                "waiting for `stopped` needs the machine's `instance_id` (or `version`)",
            ));
        }
        Ok(WaitRequest {
            goals,
            timeout: parse_timeout(query.get("timeout"))?,
            version: version.map(str::to_string),
            from_event: query.get("from_event_id").map(str::to_string),
        })
    }
}

/// A wait's argument that cannot be used: Fly's 400 with `invalid_argument`.
fn invalid(problem: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(problem.to_string()).with_code("invalid_argument")
}

/// Whole seconds (`30`) or a Go duration (`"30s"`), within [1s, 1m0s].
fn parse_timeout(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(WAIT_TIMEOUT_DEFAULT);
    };
    let timeout = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => go_duration::parse(text).map_err(invalid)?,
    };
    if (WAIT_TIMEOUT_MIN..=WAIT_TIMEOUT_MAX).contains(&timeout) {
        Ok(timeout)
    } else {
        Err(invalid(format!(
            "timeout `{text}` is out of range [1s, 1m0s]"
        )))
    }
}

/// Fly's wait answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitResponse {
    ok: bool,
    state: &'static str,
    version: String,
    event_id: String,
}

/// Answers the moment the machine reaches one of the states, or 408 at the timeout.
#[utoipa::path(get, operation_id = "Machines_wait", path = "/apps/{app}/machines/{id}/wait", tag = "machines", params(MachinePath, WaitQuery), responses((status = 200, body = WaitResponse), (status = 400, description = "invalid_argument", body = ErrorBody), (status = 408, description = "the state was not reached in time", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn wait(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    query: QueryPairs,
) -> Result<Json<WaitResponse>, ApiError> {
    let request = WaitRequest::parse(&query)?;
    let machine = match state.machine(&app, &id) {
        Ok(machine) => machine,
        Err(not_found) => return already_destroyed(&state, &app, &id, &request).ok_or(not_found),
    };
    let current = machine.record().instance_id.clone();
    if let Some(version) = request.version.as_deref().filter(|v| *v != current) {
        return Err(invalid(format!(
            "machine {id} is at version {current}, not {version}"
        )));
    }
    let from_event = request.from_event.as_deref();
    let reached = wait::until(&machine, &request.goals, from_event, request.timeout)
        .await
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "machine {id} did not reach the state within {:?}",
                    request.timeout
                ),
            )
            .with_code("deadline_exceeded")
        })?;
    Ok(Json(WaitResponse {
        ok: true,
        state: reached.state.as_str(),
        version: reached.version,
        event_id: reached.event_id,
    }))
}

/// A wait for `destroyed` on a machine destroyed earlier answers at once.
fn already_destroyed(
    state: &ApiState,
    app: &str,
    id: &str,
    request: &WaitRequest,
) -> Option<Json<WaitResponse>> {
    if !request.goals.contains(&Goal::Destroyed) {
        return None;
    }
    let record = state
        .registry()
        .app(app)?
        .destroyed()
        .into_iter()
        .find(|r| r.id == id)?;
    Some(Json(WaitResponse {
        ok: true,
        state: record.state.as_str(),
        version: record.instance_id,
        event_id: record
            .events
            .first()
            .map(|e| e.id.clone())
            .unwrap_or_default(),
    }))
}

/// The machine's events, newest first (`limit`: default 20, at most 50).
#[utoipa::path(get, operation_id = "Machines_list_events", path = "/apps/{app}/machines/{id}/events", tag = "machines", params(MachinePath, EventsQuery), responses((status = 200, body = [MachineEvent]), (status = 400, body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    query: QueryPairs,
) -> Result<Json<Vec<MachineEvent>>, ApiError> {
    let machine = state.machine(&app, &id)?;
    let limit = query
        .parsed::<usize>("limit")?
        .unwrap_or(EVENTS_LIMIT_DEFAULT)
        .clamp(1, EVENTS_LIMIT_MAX);
    let record = machine.record();
    Ok(Json(record.events.iter().take(limit).cloned().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timeouts of 1-60 s are taken in whole seconds or Go form; 0 and 61 are refused.
    #[test]
    fn timeout_bounds() {
        assert_eq!(parse_timeout(Some("1")).unwrap(), Duration::from_secs(1));
        assert_eq!(parse_timeout(Some("60")).unwrap(), Duration::from_secs(60));
        assert_eq!(parse_timeout(Some("30s")).unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout(None).unwrap(), Duration::from_secs(60));
        for bad in ["0", "61", "90s", "soon", "-1"] {
            let err = parse_timeout(Some(bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    /// States come repeated or comma-separated; `stopped` needs a version.
    #[test]
    fn states_and_version() {
        let q = QueryPairs::parse("state=started,stopped&state=destroyed&instance_id=V");
        let w = WaitRequest::parse(&q).unwrap();
        assert_eq!(w.goals, [Goal::Started, Goal::Stopped, Goal::Destroyed]);
        assert!(WaitRequest::parse(&QueryPairs::parse("state=stopped")).is_err());
        assert!(WaitRequest::parse(&QueryPairs::parse("state=nope")).is_err());
        let default = WaitRequest::parse(&QueryPairs::parse("")).unwrap();
        assert_eq!(default.goals, [Goal::Started]);
    }

    /// An empty `instance_id` or `version` is none given, as Fly takes it.
    #[test]
    fn empty_version_is_absent() {
        let q = QueryPairs::parse("state=started&instance_id=&version=");
        assert_eq!(WaitRequest::parse(&q).unwrap().version, None);
        let stopped = QueryPairs::parse("state=stopped&instance_id=");
        assert!(WaitRequest::parse(&stopped).is_err());
    }
}
