//! `/v1/apps`: create, get, list, delete.

use super::ApiState;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::openapi::{AppDeleteQuery, AppPath, AppsListQuery};
use crate::machines::registry::RegistryError;
use crate::machines::store::AppRecord;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Fly's `CreateAppRequest` (fly-go sends `name`, the docs `app_name`).
#[derive(Deserialize, utoipa::ToSchema)]
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

/// An app as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppView {
    id: String,
    name: String,
    status: &'static str,
    organization: Organization,
    machine_count: usize,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Organization {
    name: String,
    slug: String,
}

/// One app in Fly's apps list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppSummary {
    id: String,
    name: String,
    machine_count: usize,
    volume_count: usize,
    network: &'static str,
}

/// Fly's apps list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppsList {
    total_apps: usize,
    apps: Vec<AppSummary>,
}

/// Creates an app; its name becomes a hostname.
#[utoipa::path(post, operation_id = "Apps_create", path = "/apps", tag = "apps", request_body = CreateApp,
    responses((status = 201, body = AppView), (status = 400, body = ErrorBody),
        (status = 422, description = "name taken (`status`: `name_taken`)", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateApp>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    let name = body
        .app_name
        .or(body.name)
        .ok_or_else(|| ApiError::bad_request("app_name is required"))?;
    check_app_name(&name)?;
    let org = body.org_slug.unwrap_or_else(|| "personal".into());
    let record = AppRecord::new(&name, &org);
    if let Some(cluster) = &state.cluster {
        if state.registry().app(&name).is_some() {
            return Err(RegistryError::AppTaken(name).into());
        }
        // Claimed in the whole cluster first: two nodes cannot both create it.
        cluster.claim_app(&record).await?;
    }
    let record = state.registry().add_app(record)?;
    tracing::info!(app = %name, "app created");
    Ok((StatusCode::CREATED, Json(app_json(&record, 0))))
}

/// One app.
#[utoipa::path(get, operation_id = "Apps_show", path = "/apps/{app}", tag = "apps", params(AppPath),
    responses((status = 200, body = AppView), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    let app = state.app(&app)?;
    Ok(Json(app_json(&app.record, app.machines().len())))
}

#[derive(Deserialize)]
pub struct ListQuery {
    org_slug: Option<String>,
}

/// The apps, of one org if `org_slug` is given.
#[utoipa::path(get, operation_id = "Apps_list", path = "/apps", tag = "apps", params(AppsListQuery),
    responses((status = 200, body = AppsList)))]
pub async fn list(State(state): State<ApiState>, Query(query): Query<ListQuery>) -> Json<AppsList> {
    let apps: Vec<AppSummary> = state
        .registry()
        .apps()
        .iter()
        .filter(|app| {
            query
                .org_slug
                .as_ref()
                .is_none_or(|org| &app.record.org_slug == org)
        })
        .map(|app| AppSummary {
            id: app.record.id.clone(),
            name: app.record.name.clone(),
            machine_count: app.machines().len(),
            volume_count: 0,
            network: "default",
        })
        .collect();
    Json(AppsList {
        total_apps: apps.len(),
        apps,
    })
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// Deletes an app and its machines; running machines need `force=true`, which stops them.
#[utoipa::path(delete, operation_id = "Apps_delete", path = "/apps/{app}", tag = "apps", params(AppPath, AppDeleteQuery),
    responses((status = 202, description = "deleted"),
        (status = 409, description = "machines still run (pass force=true)", body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let app = state.app(&app)?;
    let machines = app.machines();
    let running = machines.iter().any(|m| m.state().is_running());
    if running && !query.force {
        return Err(ApiError::conflict(format!(
            "app {} has running machines: stop them first or pass force=true",
            app.record.name
        )));
    }
    // Every node drops it and destroys the machines it hosts.
    if let Some(cluster) = &state.cluster {
        cluster.release_app(&app.record.name).await?;
    }
    // Out of routing and of reach of new machines first, so none outlives the app.
    if let Some(app) = state.registry().remove_app(&app.record.name) {
        state.certificates.remove_app(&app.record.name);
        state.supervisor.destroy_app(app).await;
    }
    tracing::info!(app = %app.record.name, "app deleted");
    Ok(StatusCode::ACCEPTED)
}

fn app_json(r: &AppRecord, machine_count: usize) -> AppView {
    AppView {
        id: r.id.clone(),
        name: r.name.clone(),
        status: "deployed",
        organization: Organization {
            name: r.org_slug.clone(),
            slug: r.org_slug.clone(),
        },
        machine_count,
        created_at: r.created_at.clone(),
    }
}
