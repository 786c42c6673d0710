//! Forward: the request goes to the machine over the client connection's own upstream
//! (HTTP/1.1) or a pooled client (HTTP/2 clients, upgrades, h2c when the port says
//! `h2_backend`), bodies streamed both ways; an in-flight guard rides along until the
//! response body is done, so a machine is never idle while it is still answering. An
//! upgrade (WebSocket) the machine accepts becomes a tunnel.
//!
//! A machine another node hosts is reached through that node's backhaul instead: the
//! same request, headers already written for the machine, signed with the cluster's
//! key, over a pool of warm HTTP/1.1 connections (HTTP/1.1 so upgrades pass through
//! as they do to a machine).

use super::headers::{self, Forwarded};
use super::tunnel::{self, Carried};
use super::upstream::{
    ConnectionUpstream, MachineBody, SendFailure, UPSTREAM_CONNECT_TIMEOUT, UpstreamError,
};
use super::{ConnectionPermit, ProxyBody};
use crate::cluster::{BackhaulKey, Relayed, backhaul};
use crate::lifecycle::Ready;
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection to a machine is kept.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);
/// How long an idle backhaul connection to another node is kept warm.
pub const BACKHAUL_POOL_IDLE: Duration = Duration::from_secs(90);

pub type Upstream = Client<HttpConnector, MachineBody>;

/// Pooled clients to machines: HTTP/1.1, and HTTP/2 without TLS for `h2_backend`; and
/// to other nodes' backhauls, with the key that signs for them.
pub struct Upstreams {
    http1: Upstream,
    h2c: Upstream,
    backhaul: Upstream,
    pub(super) key: Option<Arc<BackhaulKey>>,
}

impl Upstreams {
    pub fn new(key: Option<Arc<BackhaulKey>>) -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(UPSTREAM_POOL_IDLE);
        let http1 = builder.build(connector.clone());
        let backhaul = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(BACKHAUL_POOL_IDLE)
            .build(connector.clone());
        let h2c = builder.http2_only(true).build(connector);
        Upstreams {
            http1,
            h2c,
            backhaul,
            key,
        }
    }
}

/// Where a request goes: straight to a machine hosted here, or to the backhaul of the
/// node that hosts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Machine,
    Backhaul(std::net::SocketAddr),
}

/// A request made ready for machines: headers rewritten for them, and what the client
/// connection carried along taken out.
pub struct Prepared {
    req: Request<MachineBody>,
    upgrade: Option<HeaderValue>,
    client_upgrade: Option<OnUpgrade>,
    permit: Option<ConnectionPermit>,
    own_upstream: Option<Arc<ConnectionUpstream>>,
    /// The public port the client came in on (named to the node a backhaul reaches).
    public_port: u16,
}

/// A machine could not be reached; `again` is the request, when it may go to another.
pub struct Unreached {
    pub machine: String,
    pub error: UpstreamError,
    pub again: Option<Prepared>,
}

pub fn prepare(req: Request<MachineBody>, fwd: &Forwarded<'_>) -> Prepared {
    take_connection_parts(req, fwd.public_port, |headers| {
        headers::to_machine(headers, fwd)
    })
}

/// A request another edge relayed over the backhaul: its headers were written for the
/// machine there (client address, that edge's region), so only what the backhaul
/// added and what described the hop between the nodes is taken off.
pub fn prepare_relayed(req: Request<Incoming>, public_port: u16) -> Prepared {
    take_connection_parts(req.map(Either::Left), public_port, |headers| {
        headers::strip_hop_by_hop(headers);
        for name in backhaul::HEADERS {
            headers.remove(name);
        }
        headers.remove(backhaul::REQUEST_ID_HEADER);
    })
}

/// Takes out what the client connection carried along, and rewrites the headers.
fn take_connection_parts(
    mut req: Request<MachineBody>,
    public_port: u16,
    rewrite: impl FnOnce(&mut http::HeaderMap),
) -> Prepared {
    let upgrade = requested_upgrade(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let permit = req.extensions_mut().remove::<ConnectionPermit>();
    let own_upstream = req.extensions_mut().remove::<Arc<ConnectionUpstream>>();
    rewrite(req.headers_mut());
    if let Some(protocol) = &upgrade {
        restore_upgrade(req.headers_mut(), protocol);
    }
    Prepared {
        req,
        upgrade,
        client_upgrade,
        permit,
        own_upstream,
        public_port,
    }
}

pub async fn send(
    upstreams: &Upstreams,
    mut prepared: Prepared,
    ready: Ready,
    request_id: &str,
) -> Result<Response<ProxyBody>, Unreached> {
    let machine = ready.machine.clone();
    let target = match &machine.node {
        None => Target::Machine,
        Some(node) => match node.backhaul() {
            Some(addr) => Target::Backhaul(addr),
            None => {
                let error =
                    UpstreamError::Connect(format!("node {} has no backhaul yet", node.name));
                let machine = machine.id.clone();
                let again = Some(prepared);
                return Err(Unreached {
                    machine,
                    error,
                    again,
                });
            }
        },
    };
    let req = &mut prepared.req;
    let authority = match target {
        Target::Machine => format!("{}:{}", machine.private_ip, ready.internal_port),
        Target::Backhaul(addr) => addr.to_string(),
    };
    *req.uri_mut() = upstream_uri(req.uri(), &authority);
    *req.version_mut() = if ready.h2_backend && target == Target::Machine {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    if let (Target::Backhaul(_), Some(key)) = (target, &upstreams.key) {
        let relayed = Relayed {
            app: machine.app.clone(),
            machine: machine.id.clone(),
            port: prepared.public_port,
            request_id: request_id.to_string(),
        };
        key.sign(req.headers_mut(), &relayed);
    }
    if ready.preferred_unavailable {
        req.headers_mut().insert(
            "fly-preferred-instance-unavailable",
            HeaderValue::from_static("true"),
        );
    }
    let response = match exchange(upstreams, &mut prepared, &ready, target).await {
        Ok(response) => response,
        Err(failure) => {
            let again = failure.unsent.map(|req| Prepared { req, ..prepared });
            let machine = machine.id.clone();
            let error = failure.error;
            return Err(Unreached {
                machine,
                error,
                again,
            });
        }
    };
    Ok(answer(response, prepared, ready, request_id))
}

/// Sends the request over the connection's own upstream or a pooled client. The
/// request is taken out of `prepared`, and given back in the failure when unsent.
async fn exchange(
    upstreams: &Upstreams,
    prepared: &mut Prepared,
    ready: &Ready,
    target: Target,
) -> Result<Response<Incoming>, SendFailure> {
    let req = std::mem::replace(
        &mut prepared.req,
        Request::new(Either::Right(Full::default())),
    );
    let own = prepared.own_upstream.as_ref();
    let direct = target == Target::Machine && !ready.h2_backend && prepared.upgrade.is_none();
    match own.filter(|_| direct) {
        Some(own) => {
            let addr = std::net::SocketAddr::from((ready.machine.private_ip, ready.internal_port));
            let mut req = req;
            *req.uri_mut() = origin_form(req.uri());
            own.send(addr, req).await
        }
        None => {
            let client = match target {
                Target::Backhaul(_) => &upstreams.backhaul,
                Target::Machine if ready.h2_backend => &upstreams.h2c,
                Target::Machine => &upstreams.http1,
            };
            let copy = resendable(&req, prepared.upgrade.is_some()).then(|| head_copy(&req));
            client.request(req).await.map_err(|e| match e.is_connect() {
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

/// The machine's answer on its way to the client: a 101 becomes a tunnel; otherwise
/// the edge's headers are added and the in-flight guard rides on the body.
fn answer(
    mut response: Response<Incoming>,
    prepared: Prepared,
    ready: Ready,
    request_id: &str,
) -> Response<ProxyBody> {
    if let (Some(protocol), Some(client_upgrade)) = (&prepared.upgrade, prepared.client_upgrade)
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        return switch_protocols(
            response,
            client_upgrade,
            protocol,
            ready,
            request_id,
            prepared.permit,
        );
    }
    let machine = &ready.machine;
    headers::to_client(
        response.headers_mut(),
        &machine.id,
        &machine.region,
        request_id,
    );
    let (parts, body) = response.into_parts();
    let guard = ready.in_flight;
    let body = body
        .map_frame(move |frame| {
            let _ = &guard; // held until the body is finished or dropped
            frame
        })
        .boxed_unsync();
    Response::from_parts(parts, body)
}

/// The protocol an HTTP/1.1 request asks to upgrade to, if any.
fn requested_upgrade<B>(req: &Request<B>) -> Option<HeaderValue> {
    let connection_upgrade = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    connection_upgrade
        .then(|| req.headers().get(UPGRADE).cloned())
        .flatten()
}

fn restore_upgrade(headers: &mut http::HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

/// Answers the client's upgrade with the machine's 101 and joins the two connections.
fn switch_protocols(
    mut response: Response<Incoming>,
    client_upgrade: OnUpgrade,
    protocol: &HeaderValue,
    ready: Ready,
    request_id: &str,
    permit: Option<ConnectionPermit>,
) -> Response<ProxyBody> {
    let machine_upgrade = hyper::upgrade::on(&mut response);
    let machine = &ready.machine;
    headers::to_client(
        response.headers_mut(),
        &machine.id,
        &machine.region,
        request_id,
    );
    restore_upgrade(response.headers_mut(), protocol);
    let websocket = protocol.as_bytes().eq_ignore_ascii_case(b"websocket");
    let carried = if websocket {
        Carried::WebSocket
    } else {
        Carried::Bytes
    };
    let tunnel_guard = ready.machine.tunnels.open();
    tokio::spawn(async move {
        let _permit = permit; // the tunnel still counts against the connection limit
        let (Ok(client), Ok(machine)) = (client_upgrade.await, machine_upgrade.await) else {
            return;
        };
        tunnel::pump(
            TokioIo::new(client),
            TokioIo::new(machine),
            carried,
            tunnel_guard,
            ready.in_flight,
        )
        .await;
    });
    let (parts, _) = response.into_parts();
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    Response::from_parts(parts, empty)
}

/// The path and query alone, as an HTTP/1.1 request line to the machine carries them.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// The URI of the request at `authority` (`ip:port` of a machine or a backhaul).
fn upstream_uri(original: &Uri, authority: &str) -> Uri {
    let authority = Authority::try_from(authority).expect("ip:port is an authority");
    let path = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .expect("scheme, authority and path make a URI")
}
