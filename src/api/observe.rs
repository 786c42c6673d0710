//! The operator's probes, open without a token (the API listener is the operator's):
//! `/metrics` in Prometheus' text format, `/healthz` (the process answers) and
//! `/readyz` (listeners bound and state loaded, not shutting down).

use super::ApiState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// Every series edgewake keeps (see `metrics`).
#[utoipa::path(get, path = "/metrics", tag = "edgewake", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let machines = state.registry().all_machines();
    let states = machines.iter().map(|m| m.state().as_str());
    let text = state.supervisor.metrics.render(states);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

/// Live: edgewake answers.
#[utoipa::path(get, path = "/healthz", tag = "edgewake", security(()),
    responses((status = 200, description = "edgewake runs", content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: every listener is bound and the state is loaded (the API serves only after
/// both), and edgewake is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "edgewake", security(()),
    responses((status = 200, description = "serving", content_type = "text/plain"),
        (status = 503, description = "shutting down", content_type = "text/plain")))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    if state.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
