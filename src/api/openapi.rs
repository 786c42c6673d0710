//! The OpenAPI 3 document of edgewake's own API, served at `/v1/openapi.json`. It is
//! generated, not written: every route is registered through utoipa-axum's `routes!`,
//! which takes the path, methods, parameters and bodies from the handler's
//! `#[utoipa::path]` and the body types' `ToSchema`, so a route cannot exist without
//! its entry. The parameter structs below only describe parameters for the document;
//! handlers read them with their own extractors.
#![allow(dead_code)] // the structs below are read by the derive macros only

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

/// The document's fixed parts; paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgewake Machines API",
        description = "Fly-compatible Machines API of edgewake. Every /v1 call needs \
            `Authorization: Bearer <token>` (or `FlyV1 <token>`); every answer carries \
            `fly-request-id`; errors are `{\"error\", \"status\"?}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "apps"), (name = "machines"), (name = "lifecycle"),
        (name = "metadata"), (name = "leases"), (name = "certificates"), (name = "edgewake")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON, shared by every request.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// This document (no token needed).
#[utoipa::path(get, operation_id = "Edgewake_openapi", path = "/v1/openapi.json", tag = "edgewake", security(()),
    responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json")))]
pub async fn document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The app's name.
    app: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MachinePath {
    /// The app's name.
    app: String,
    /// The machine's id (14 hex digits).
    id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MetadataPath {
    app: String,
    id: String,
    /// The metadata key.
    key: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CertificatePath {
    /// The app's name.
    app: String,
    /// The hostname (a wildcard's `*` URL-encoded: `%2A.example.com`).
    hostname: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificatesListQuery {
    /// Only hostnames containing this.
    filter: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Hostnames per page (default 25, at most 500).
    limit: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppsListQuery {
    /// Only the apps of this org.
    org_slug: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppDeleteQuery {
    /// Stop and destroy running machines too.
    force: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MachineDeleteQuery {
    /// Destroy a running machine (stopping it first).
    force: Option<bool>,
    /// fly-go's spelling of `force`.
    kill: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MachineListQuery {
    /// Only machines in this region.
    region: Option<String>,
    /// Only machines in these states (comma-separated or repeated).
    state: Option<String>,
    /// Also destroyed machines.
    include_deleted: Option<bool>,
    /// Leave out `config` and `events`.
    summary: Option<bool>,
    /// `metadata.KEY=VALUE`: only machines whose metadata has KEY = VALUE (any number).
    #[param(rename = "metadata.{key}")]
    metadata: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RestartQuery {
    /// Stop signal, a name or a number.
    signal: Option<String>,
    /// Stop timeout: whole seconds or a Go duration (`"10s"`).
    timeout: Option<String>,
    /// Kill at once (SIGKILL).
    force_stop: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// started (default), stopped, suspended, destroyed, failed, settled; comma-separated or repeated.
    state: Option<String>,
    /// Whole seconds, 1-60 (default 60).
    timeout: Option<u32>,
    /// The machine's version; required for `stopped`.
    instance_id: Option<String>,
    /// Same as `instance_id`.
    version: Option<String>,
    /// Only a state reached after this event counts.
    from_event_id: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// How many, newest first: default 20, at most 50.
    limit: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseQuery {
    /// Seconds (default 30); the body's `ttl` wins.
    ttl: Option<u64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep the answer open and stream new output.
    follow: Option<bool>,
    /// Start at this byte of the output.
    offset: Option<u64>,
}
