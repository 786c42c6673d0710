//! API anywhere: in a cluster every node answers every call. Reads come from the local
//! view; a call that changes a machine another node hosts (and reads only its host
//! has: its lease, its logs) goes to that node's API, as it came — the same path,
//! body and token (every node of a cluster shares the API token) — and its answer comes
//! back as the host gave it. A new machine is created by a node of its region. While
//! the shared state is unreachable, every change is refused with a 503.

use super::ApiState;
use super::error::ApiError;
use crate::cluster::Cluster;
use crate::machines::nodes::Node;
use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// Marks a call one node forwarded to another: it is answered there, never sent on.
pub const FORWARDED_BY: &str = "edgewake-forwarded-by";
/// Largest create body read to find its region (Fly's configs are a few KB).
pub const MAX_CREATE_BODY: usize = 1024 * 1024;
/// How long connecting to another node's API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The pooled client that carries calls to other nodes.
#[derive(Clone)]
pub struct Forwarder(Client<HttpConnector, Body>);

impl Default for Forwarder {
    fn default() -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Forwarder(Client::builder(TokioExecutor::new()).build(connector))
    }
}

/// Where a call is answered.
enum Answerer {
    Here(Request),
    Node(Arc<Node>, Request),
}

/// The middleware in front of every `/v1` route.
pub async fn to_host(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(cluster) = state.cluster.clone() else {
        return Ok(next.run(req).await);
    };
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes {
        cluster.writable()?;
    }
    if req.headers().contains_key(FORWARDED_BY) {
        // Another node sent it here as to the host: answered here, never sent on. A
        // machine this node does not host (the caller's view was behind, or the header
        // came from a client) is refused, not changed here: only its host writes it.
        return match machine_host(&state, &req, changes) {
            Some(node) => Err(misdirected(&node)),
            None => Ok(next.run(req).await),
        };
    }
    match answerer(&state, &cluster, req, changes).await? {
        Answerer::Here(req) => Ok(next.run(req).await),
        Answerer::Node(node, req) => forward(&state.forwarder, &cluster, &node, req).await,
    }
}

async fn answerer(
    state: &ApiState,
    cluster: &Cluster,
    req: Request,
    changes: bool,
) -> Result<Answerer, ApiError> {
    if let Some(node) = machine_host(state, &req, changes) {
        return Ok(Answerer::Node(node, req));
    }
    let path = full_path(&req);
    let segments: Vec<&str> = path.trim_start_matches("/v1").split('/').skip(1).collect();
    match segments.as_slice() {
        ["apps", _, "machines"] if req.method() == Method::POST => {
            create_answerer(state, cluster, req).await
        }
        _ => Ok(Answerer::Here(req)),
    }
}

/// The node hosting the machine a call is about, when that call is its host's to
/// answer (a change, its lease, its logs) and the host is another node.
fn machine_host(state: &ApiState, req: &Request, changes: bool) -> Option<Arc<Node>> {
    let path = full_path(req);
    let segments: Vec<&str> = path.trim_start_matches("/v1").split('/').skip(1).collect();
    let ["apps", app, "machines", id, rest @ ..] = segments.as_slice() else {
        return None;
    };
    let host_only = matches!(rest.first(), Some(&"lease" | &"logs"));
    let machine = state.registry().machine(app, id)?;
    machine.node.clone().filter(|_| changes || host_only)
}

/// A forwarded call that reached a node not hosting its machine.
fn misdirected(node: &Node) -> ApiError {
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "the machine is hosted by node {}, not by this one; call any node without `{FORWARDED_BY}`",
            node.name
        ),
    )
}

/// A create goes to a node of the requested region (else this node's region).
async fn create_answerer(
    state: &ApiState,
    cluster: &Cluster,
    req: Request,
) -> Result<Answerer, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_CREATE_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let region = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|body| body["region"].as_str().map(str::to_string));
    let req = Request::from_parts(parts, Body::from(bytes));
    let region = state.region(region.as_deref())?;
    Ok(match cluster.host_for_region(&region)? {
        Some(node) => Answerer::Node(node, req),
        None => Answerer::Here(req),
    })
}

/// The path as the client sent it (a nested router sees it without `/v1`).
fn full_path(req: &Request) -> String {
    req.extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |original| original.path())
        .to_string()
}

async fn forward(
    forwarder: &Forwarder,
    cluster: &Cluster,
    node: &Node,
    req: Request,
) -> Result<Response, ApiError> {
    let unreachable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {} cannot be reached; try again later", node.name),
        )
    };
    let addr = node
        .api()
        .filter(|_| node.is_up())
        .ok_or_else(unreachable)?;
    let (mut parts, body) = req.into_parts();
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.clone(), |original| original.0.clone());
    let path = path.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{addr}{path}")).map_err(|_| unreachable())?;
    if let Ok(value) = HeaderValue::from_str(&cluster.node) {
        parts.headers.insert(FORWARDED_BY, value);
    }
    let response = forwarder
        .0
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            tracing::warn!(node = %node.name, "forwarded API call failed: {e}");
            unreachable()
        })?;
    Ok(response.map(Body::new).into_response())
}
