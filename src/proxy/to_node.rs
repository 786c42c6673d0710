//! A machine another node of the cluster hosts: the request goes to that node's
//! backhaul, headers already written for the machine, signed with the cluster's key,
//! over a pool of warm HTTP/1.1 connections (HTTP/1.1 so upgrades pass through as they
//! do to a machine). The hosting node's listener bounds what it accepts
//! (`cluster.max_backhaul_connections`); the connections kept warm here are one per
//! request in flight to a node at most.

use super::upstream::{MachineBody, SendFailure, UPSTREAM_CONNECT_TIMEOUT, UpstreamError};
use crate::cluster::{BackhaulKey, Relayed};
use crate::lifecycle::Ready;
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an idle backhaul connection to another node is kept warm.
pub const BACKHAUL_POOL_IDLE: Duration = Duration::from_secs(90);

/// Where a request goes: straight to a machine hosted here, or to the backhaul of the
/// node that hosts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Machine,
    Backhaul(SocketAddr),
}

/// Where the ready machine is reached; an error when its node has no backhaul yet.
pub fn target(ready: &Ready) -> Result<Target, UpstreamError> {
    match &ready.machine.node {
        None => Ok(Target::Machine),
        Some(node) => node.backhaul().map(Target::Backhaul).ok_or_else(|| {
            UpstreamError::Connect(format!("node {} has no backhaul yet", node.name))
        }),
    }
}

/// Addresses the request to the node's backhaul, signed (when there is a key) with
/// what the hosting node needs: the app, the machine, the public port, the request id.
pub fn address(
    req: &mut Request<MachineBody>,
    addr: SocketAddr,
    key: Option<&BackhaulKey>,
    ready: &Ready,
    public_port: u16,
    request_id: &str,
) {
    *req.uri_mut() = super::upstream::http_uri(req.uri(), addr.to_string().as_bytes());
    *req.version_mut() = Version::HTTP_11;
    if let Some(key) = key {
        let machine = &ready.machine;
        let relayed = Relayed {
            app: machine.app.clone(),
            machine: machine.id.clone(),
            port: public_port,
            request_id: request_id.to_string(),
        };
        key.sign(req.headers_mut(), &relayed);
    }
}

/// The pooled client to other nodes' backhauls.
pub struct Backhaul(Client<HttpConnector, MachineBody>);

impl Backhaul {
    pub fn new() -> Backhaul {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(BACKHAUL_POOL_IDLE)
            .build(connector);
        Backhaul(client)
    }

    /// Sends the (addressed) request; one that could not connect comes back unsent when
    /// it can be copied (idempotent, no body, no upgrade).
    pub async fn send(
        &self,
        req: Request<MachineBody>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, SendFailure> {
        let copy = resendable(&req, upgrade).then(|| head_copy(&req));
        self.0.request(req).await.map_err(|e| match e.is_connect() {
            true => SendFailure {
                error: UpstreamError::connect(&e),
                unsent: copy,
            },
            false => SendFailure {
                error: UpstreamError::exchange(&e),
                unsent: None,
            },
        })
    }
}

/// Whether a pooled request may be sent again: idempotent, no body, no upgrade. The
/// pool consumes the request, so only such a request can be copied cheaply before.
fn resendable(req: &Request<MachineBody>, upgrade: bool) -> bool {
    !upgrade && req.method().is_idempotent() && req.body().is_end_stream()
}

fn head_copy(req: &Request<MachineBody>) -> Request<MachineBody> {
    let mut copy = Request::new(Either::Right(Full::default()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}
