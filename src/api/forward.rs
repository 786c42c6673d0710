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
/// How long another node may take to begin answering a forwarded call (its status and
/// headers), beyond the wait the call may ask for itself (`call_wait`). A node that
/// took the call and went silent would otherwise hold the caller, and a connection
/// here, for as long as the caller waits. The answer's body is not bounded: a followed
/// log streams for as long as its machine runs.
pub const FORWARDED_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The longest a call may keep its host busy before answering, by what it asks: a
/// wait its own timeout (at most), an exec its command's, a stop (or a restart, a
/// suspend, a destroy) the machine's stop timeout, a create or an update the pull of
/// its image. The most each may ask, not what this one asked: its body is passed on
/// unread.
fn call_wait(method: &Method, path: &str) -> Duration {
    let segments: Vec<&str> = path.trim_start_matches("/v1").split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        (_, ["apps", _, "machines", _, "wait"]) => super::wait::WAIT_TIMEOUT_MAX,
        (_, ["apps", _, "machines", _, "exec"]) => super::exec::MAX_EXEC_TIMEOUT,
        (_, ["apps", _, "machines", _, "stop" | "restart" | "suspend"])
        | (&Method::DELETE, ["apps", _, "machines", _]) => crate::config::MAX_STOP_TIMEOUT,
        (&Method::POST, ["apps", _, "machines"] | ["apps", _, "machines", _]) => {
            crate::images::DEFAULT_TOOL_TIMEOUT
        }
        _ => Duration::ZERO,
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
        Answerer::Node(node, req) => forward(&state.forwarder, &cluster.node, &node, req).await,
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

/// Sends the call to `node` as node `from`, and gives back its answer.
async fn forward(
    forwarder: &Forwarder,
    from: &str,
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
    let patience = FORWARDED_ANSWER_TIMEOUT + call_wait(&parts.method, path.path());
    let path = path.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{addr}{path}")).map_err(|_| unreachable())?;
    if let Ok(value) = HeaderValue::from_str(from) {
        parts.headers.insert(FORWARDED_BY, value);
    }
    let call = forwarder.0.request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout(patience, call).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(node = %node.name, "forwarded API call failed: {e}");
            return Err(unreachable());
        }
        Err(_) => {
            tracing::warn!(node = %node.name, "forwarded API call unanswered after {patience:?}");
            return Err(unanswered(node, patience));
        }
    };
    Ok(response.map(Body::new).into_response())
}

/// A forwarded call its host took but did not answer in time: whether it acted on it
/// is unknown, so the caller is told to look before trying again.
fn unanswered(node: &Node, patience: Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "node {} did not answer within {patience:?}; the change may or may not have been made there: read the machine before trying again",
            node.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::nodes::NodeFacts;
    use tokio::time::Instant;

    /// A node whose API listens (the kernel completes connections) but never answers.
    fn silent_node() -> (Node, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let node = Node::new("syd-1");
        node.set_up(true);
        *node.facts() = Some(NodeFacts {
            region: "syd".into(),
            backhaul: addr,
            api: addr,
            heartbeat_ms: 0,
            machines: 1,
        });
        (node, listener)
    }

    async fn forward_to_silent(method: Method, path: &str) -> (ApiError, Duration) {
        let (node, _listener) = silent_node();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from("{}"))
            .unwrap();
        let began = Instant::now();
        let forwarder = Forwarder::default();
        let call = forward(&forwarder, "ams-1", &node, req);
        // Paused time: without a bound of its own the call would end here, an hour on.
        let answer = tokio::time::timeout(Duration::from_secs(3600), call).await;
        let Err(error) = answer.expect("the call is bounded") else {
            panic!("a node that never answers gave an answer");
        };
        (error, began.elapsed())
    }

    /// A forwarded write the host took and never answered fails with a 504 naming the
    /// node after `FORWARDED_ANSWER_TIMEOUT`, instead of holding the caller.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_forwarded_call_times_out() {
        let (error, waited) =
            forward_to_silent(Method::POST, "/v1/apps/shop/machines/m1/metadata/k").await;
        assert_eq!(error.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(error.message.contains("syd-1"), "{}", error.message);
        assert!(waited >= FORWARDED_ANSWER_TIMEOUT, "{waited:?}");
        assert!(waited < FORWARDED_ANSWER_TIMEOUT + Duration::from_secs(1));
    }

    /// A forwarded stop may wait the longest stop timeout before the same margin, and a
    /// wait its own longest timeout: the host's answer when they end still arrives.
    #[tokio::test(start_paused = true)]
    async fn a_call_that_waits_is_given_its_wait_and_the_margin() {
        let (error, waited) =
            forward_to_silent(Method::POST, "/v1/apps/shop/machines/m1/stop").await;
        assert_eq!(error.status, StatusCode::GATEWAY_TIMEOUT);
        let allowed = crate::config::MAX_STOP_TIMEOUT + FORWARDED_ANSWER_TIMEOUT;
        assert!(
            waited >= allowed && waited < allowed + Duration::from_secs(1),
            "{waited:?}"
        );
        let wait = call_wait(&Method::GET, "/v1/apps/shop/machines/m1/wait");
        assert_eq!(wait, crate::api::wait::WAIT_TIMEOUT_MAX);
        let exec = call_wait(&Method::POST, "/v1/apps/shop/machines/m1/exec");
        assert_eq!(exec, crate::api::exec::MAX_EXEC_TIMEOUT);
        let lease = call_wait(&Method::POST, "/v1/apps/shop/machines/m1/lease");
        assert_eq!(lease, Duration::ZERO);
    }
}
