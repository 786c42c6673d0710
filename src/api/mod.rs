//! The Machines API, compatible with Fly's: apps and machines under `/v1`, every call
//! behind a bearer token, errors as `{"error": ...}`.

mod apps;
pub mod auth;
pub mod error;
mod lease;
mod lifecycle;
mod list;
mod machines;
mod metadata;
mod query;
mod request_id;
mod wait;

use crate::machines::{App, Machine, Registry, Supervisor};
use axum::Router;
use axum::routing::{get, post};
use error::ApiError;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub supervisor: Arc<Supervisor>,
    pub token: Arc<str>,
    pub regions: Arc<[String]>,
    pub edge_region: Arc<str>,
}

impl ApiState {
    fn registry(&self) -> &Registry {
        &self.supervisor.registry
    }

    fn app(&self, name: &str) -> Result<Arc<App>, ApiError> {
        self.registry()
            .app(name)
            .ok_or_else(|| ApiError::not_found(format!("Could not find App \"{name}\"")))
    }

    fn machine(&self, app: &str, id: &str) -> Result<Arc<Machine>, ApiError> {
        let app = self.app(app)?;
        self.registry()
            .machine(&app.record.name, id)
            .ok_or_else(|| ApiError::not_found(format!("machine {id} not found")))
    }

    /// The region a new machine goes to: the first of a preference list, else the edge's.
    fn region(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let Some(first) = requested
            .and_then(|r| r.split(',').next())
            .map(str::trim)
            .filter(|r| !r.is_empty())
        else {
            return Ok(self.edge_region.to_string());
        };
        if self.regions.iter().any(|r| r == first) {
            Ok(first.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "unknown region `{first}` (configured: {})",
                self.regions.join(", ")
            )))
        }
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/apps", post(apps::create).get(apps::list))
        .route("/apps/{app}", get(apps::get).delete(apps::delete))
        .route(
            "/apps/{app}/machines",
            post(machines::create).get(list::list),
        )
        .route(
            "/apps/{app}/machines/{id}",
            get(machines::get)
                .post(machines::update)
                .delete(machines::delete),
        )
        .route("/apps/{app}/machines/{id}/start", post(lifecycle::start))
        .route("/apps/{app}/machines/{id}/stop", post(lifecycle::stop))
        .route(
            "/apps/{app}/machines/{id}/suspend",
            post(lifecycle::suspend),
        )
        .route(
            "/apps/{app}/machines/{id}/restart",
            post(lifecycle::restart),
        )
        .route("/apps/{app}/machines/{id}/signal", post(lifecycle::signal))
        .route("/apps/{app}/machines/{id}/cordon", post(lifecycle::cordon))
        .route(
            "/apps/{app}/machines/{id}/uncordon",
            post(lifecycle::uncordon),
        )
        .route(
            "/apps/{app}/machines/{id}/lease",
            post(lease::acquire).get(lease::show).delete(lease::release),
        )
        .route(
            "/apps/{app}/machines/{id}/metadata",
            get(metadata::list)
                .put(metadata::update)
                .patch(metadata::update),
        )
        .route(
            "/apps/{app}/machines/{id}/metadata/{key}",
            get(metadata::get)
                .post(metadata::set)
                .delete(metadata::delete),
        )
        .route("/apps/{app}/machines/{id}/wait", get(wait::wait))
        .route("/apps/{app}/machines/{id}/events", get(wait::events))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::add,
        ))
        .with_state(state)
}
