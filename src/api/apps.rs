//! `/v1/apps`: create, get, list, delete.

use super::ApiState;
use super::error::{ApiError, ApiJson};
use crate::machines::MachineState;
use crate::machines::registry::RegistryError;
use crate::machines::store::AppRecord;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct CreateApp {
    app_name: Option<String>,
    name: Option<String>,
    #[serde(default)]
    org_slug: Option<String>,
}

/// Longest app name: it must fit in one DNS label.
const MAX_APP_NAME: usize = 63;

/// App names become hostnames (`<app>.<domain>`), so they must be DNS labels.
fn check_app_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_APP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid app name `{name}`: use 1-{MAX_APP_NAME} lowercase letters, digits and dashes"
        )))
    }
}

pub async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateApp>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body
        .app_name
        .or(body.name)
        .ok_or_else(|| ApiError::bad_request("app_name is required"))?;
    check_app_name(&name)?;
    let org = body.org_slug.unwrap_or_else(|| "personal".into());
    let record = state
        .registry()
        .create_app(&name, &org)
        .map_err(|e| match e {
            RegistryError::AppTaken(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                    .with_code("name_taken")
            }
            other => ApiError::internal(other.to_string()),
        })?;
    tracing::info!(app = %name, "app created");
    Ok((StatusCode::CREATED, Json(app_json(&record, 0))))
}

pub async fn get(
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app = state.app(&app)?;
    Ok(Json(app_json(&app.record, app.machines().len())))
}

#[derive(Deserialize)]
pub struct ListQuery {
    org_slug: Option<String>,
}

pub async fn list(State(state): State<ApiState>, Query(query): Query<ListQuery>) -> Json<Value> {
    let apps: Vec<Value> = state
        .registry()
        .apps()
        .iter()
        .filter(|app| {
            query
                .org_slug
                .as_ref()
                .is_none_or(|org| &app.record.org_slug == org)
        })
        .map(|app| {
            json!({
                "id": app.record.id,
                "name": app.record.name,
                "machine_count": app.machines().len(),
                "volume_count": 0,
                "network": "default",
            })
        })
        .collect();
    Json(json!({ "total_apps": apps.len(), "apps": apps }))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// Deletes an app and its machines; running machines need `force=true`, which stops them.
pub async fn delete(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let app = state.app(&app)?;
    let machines = app.machines();
    let running = machines
        .iter()
        .any(|m| matches!(m.state(), MachineState::Started | MachineState::Starting));
    if running && !query.force {
        return Err(ApiError::conflict(format!(
            "app {} has running machines: stop them first or pass force=true",
            app.record.name
        )));
    }
    // Out of routing and of reach of new machines first, so none outlives the app.
    if let Some(app) = state.registry().remove_app(&app.record.name) {
        state.supervisor.destroy_app(app).await;
    }
    tracing::info!(app = %app.record.name, "app deleted");
    Ok(StatusCode::ACCEPTED)
}

fn app_json(r: &AppRecord, machine_count: usize) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "status": "deployed",
        "organization": { "name": r.org_slug, "slug": r.org_slug },
        "machine_count": machine_count,
        "created_at": r.created_at,
    })
}
