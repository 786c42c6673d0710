//! The Machines API, compatible with Fly's: apps and machines under `/v1`, every call
//! behind a bearer token, errors as `{"error": ...}`.

mod apps;
pub mod auth;
mod certificate_views;
mod certificates;
pub mod error;
mod exec;
pub mod forward;
mod keepawake;
mod lease;
mod lifecycle;
mod list;
pub mod listen;
mod logs;
mod machines;
mod metadata;
mod observe;
pub mod openapi;
mod query;
mod request_id;
mod wait;

use crate::certificates::Certificates;
use crate::cluster::Cluster;
use crate::drivers::DriverError;
use crate::lifecycle::Supervisor;
use crate::machines::spec::MachineSpec;
use crate::machines::{App, Machine, Registry};
use arc_swap::ArcSwap;
use axum::Router;
use error::ApiError;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub supervisor: Arc<Supervisor>,
    pub certificates: Arc<Certificates>,
    pub token: Arc<str>,
    /// Swapped by a config reload.
    pub regions: Arc<ArcSwap<RegionList>>,
    /// Fires when the server begins to shut down: answers that would stream for ever
    /// (followed logs) end then, so the API's drain does not wait for them.
    pub stopping: tokio_util::sync::CancellationToken,
    /// In a cluster: the shared state, and where calls for other nodes' machines go.
    pub cluster: Option<Arc<Cluster>>,
    /// Carries calls to the nodes that host their machines.
    pub forwarder: forward::Forwarder,
    /// Longest keep-awake one call may ask (`wake.keep_awake_max`).
    pub keep_awake_max: std::time::Duration,
}

/// The regions new machines may be placed in, and the edge's own (the default).
#[derive(Debug, Clone)]
pub struct RegionList {
    pub codes: Vec<String>,
    pub edge: String,
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

    /// A machine config as given to create or update: present, valid, normalised, and of
    /// an image the driver can run.
    async fn accept_config(
        &self,
        config: Option<serde_json::Value>,
    ) -> Result<(serde_json::Value, MachineSpec), ApiError> {
        let config = config
            .ok_or_else(|| ApiError::bad_request("config is required (with config.image)"))?;
        let (config, spec) = MachineSpec::accept(config)?;
        let checked = self.supervisor.driver().check_image(&spec.image).await;
        if let Err(e @ (DriverError::Registry(_) | DriverError::ImageNotFound(_))) = &checked {
            // The operator's log has a line per failed pull; the client gets the status.
            tracing::warn!(image = %spec.image, "pull failed: {e}");
            self.supervisor.metrics.driver_error("pull");
        }
        checked?;
        Ok((config, spec))
    }

    /// The region a new machine goes to: the first of a preference list, else the edge's.
    fn region(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let regions = self.regions.load();
        let Some(first) = requested
            .and_then(|r| r.split(',').next())
            .map(str::trim)
            .filter(|r| !r.is_empty())
        else {
            return Ok(regions.edge.clone());
        };
        if regions.codes.iter().any(|r| r == first) {
            Ok(first.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "unknown region `{first}` (configured: {})",
                regions.codes.join(", ")
            )))
        }
    }
}

/// The `/v1` routes, each registered with its OpenAPI entry (see `openapi`).
fn v1_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(apps::create, apps::list))
        .routes(routes!(apps::get, apps::delete))
        .routes(routes!(machines::create, list::list))
        .routes(routes!(machines::get, machines::update, machines::delete))
        .routes(routes!(lifecycle::start))
        .routes(routes!(lifecycle::stop))
        .routes(routes!(lifecycle::suspend))
        .routes(routes!(lifecycle::restart))
        .routes(routes!(lifecycle::signal))
        .routes(routes!(lifecycle::cordon))
        .routes(routes!(lifecycle::uncordon))
        .routes(routes!(exec::exec))
        .routes(routes!(wait::wait))
        .routes(routes!(wait::events))
        .routes(routes!(logs::logs))
        .routes(routes!(lease::acquire, lease::show, lease::release))
        .routes(routes!(
            metadata::list,
            metadata::update,
            metadata::update_put
        ))
        .routes(routes!(metadata::get, metadata::set, metadata::delete))
        .routes(routes!(certificates::list))
        .routes(routes!(certificates::request_acme))
        .routes(routes!(certificates::import_custom))
        .routes(routes!(certificates::get, certificates::delete))
        .routes(routes!(certificates::check))
        .routes(routes!(certificates::delete_acme))
        .routes(routes!(certificates::delete_custom))
}

/// The API's routes: `/v1` behind the token, the document open to all, every answer
/// with a `fly-request-id`, errors as Fly's JSON.
pub fn router(state: ApiState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
    // Token first, then (in a cluster) the node that answers.
    let to_host = axum::middleware::from_fn_with_state(state.clone(), forward::to_host);
    let (v1, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest(
            "/v1",
            // `layer`, not `route_layer`: a path no route takes is refused without a
            // token too, so the API's shape is not shown to whoever asks.
            v1_routes()
                .fallback(error::no_route)
                .route_layer(to_host)
                .layer(auth),
        )
        .routes(routes!(openapi::document))
        .routes(routes!(observe::metrics))
        .routes(routes!(observe::healthz))
        .routes(routes!(observe::readyz))
        // Outside `/v1`'s token check: a machine calls it with its own token.
        .routes(routes!(keepawake::keep_awake))
        .split_for_parts();
    let doc = openapi::Document(doc.to_json().expect("the document serializes").into());
    v1.fallback(error::no_route)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(axum::Extension(doc))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::add,
        ))
        .with_state(state)
}
