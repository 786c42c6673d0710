//! Phase 5, forward: the request goes to the machine over a pooled client (HTTP/1.1, or
//! h2c when the port says `h2_backend`), bodies streamed both ways; an in-flight guard
//! rides along until the response body is done, so a machine is never idle while it is
//! still answering. An upgrade (WebSocket) the machine accepts becomes a tunnel.

use super::headers::{self, Forwarded};
use super::respond::ProxyError;
use super::tunnel::{self, Carried};
use super::upstream::ConnectionUpstream;
use super::{ConnectionPermit, ProxyBody};
use crate::machines::Machine;
use crate::machines::activity::InFlight;
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection to a machine is kept.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);
/// How long connecting to a started machine may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub type Upstream = Client<HttpConnector, Incoming>;

/// Pooled clients to machines: HTTP/1.1, and HTTP/2 without TLS for `h2_backend`.
pub struct Upstreams {
    http1: Upstream,
    h2c: Upstream,
}

impl Upstreams {
    pub fn new() -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(UPSTREAM_POOL_IDLE);
        let http1 = builder.build(connector.clone());
        let h2c = builder.http2_only(true).build(connector);
        Upstreams { http1, h2c }
    }
}

/// The machine a request was routed to, counted in flight.
pub struct Routed {
    pub machine: Arc<Machine>,
    pub internal_port: u16,
    pub h2_backend: bool,
    /// `fly-prefer-instance-id` could not be honoured (the machine is told so).
    pub preferred_unavailable: bool,
    pub in_flight: InFlight,
}

pub async fn forward(
    upstreams: &Upstreams,
    mut req: Request<Incoming>,
    fwd: &Forwarded<'_>,
    routed: Routed,
    request_id: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let machine = routed.machine.clone();
    let upgrade = requested_upgrade(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let permit = req.extensions_mut().remove::<ConnectionPermit>();
    let own_upstream = req.extensions_mut().remove::<Arc<ConnectionUpstream>>();
    *req.uri_mut() = machine_uri(req.uri(), &machine, routed.internal_port);
    *req.version_mut() = if routed.h2_backend {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    headers::to_machine(req.headers_mut(), fwd);
    if routed.preferred_unavailable {
        req.headers_mut().insert(
            "fly-preferred-instance-unavailable",
            HeaderValue::from_static("true"),
        );
    }
    if let Some(protocol) = &upgrade {
        restore_upgrade(req.headers_mut(), protocol);
    }
    let upstream_error = |message| ProxyError::Upstream {
        machine: machine.id.clone(),
        message,
    };
    let mut response = match own_upstream.filter(|_| !routed.h2_backend && upgrade.is_none()) {
        Some(own) => {
            let addr = std::net::SocketAddr::from((machine.private_ip, routed.internal_port));
            *req.uri_mut() = origin_form(req.uri());
            own.send(addr, req)
                .await
                .map_err(|e| upstream_error(error_chain(&e)))?
        }
        None => {
            let client = if routed.h2_backend {
                &upstreams.h2c
            } else {
                &upstreams.http1
            };
            client
                .request(req)
                .await
                .map_err(|e| upstream_error(error_chain(&e)))?
        }
    };
    if let (Some(protocol), Some(client_upgrade)) = (&upgrade, client_upgrade)
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let switched = switch_protocols(
            response,
            client_upgrade,
            protocol,
            routed,
            request_id,
            permit,
        );
        return Ok(switched);
    }
    headers::to_client(
        response.headers_mut(),
        &machine.id,
        &machine.region,
        request_id,
    );
    let (parts, body) = response.into_parts();
    let guard = routed.in_flight;
    let body = body
        .map_frame(move |frame| {
            let _ = &guard; // held until the body is finished or dropped
            frame
        })
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
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
    client_upgrade: hyper::upgrade::OnUpgrade,
    protocol: &HeaderValue,
    routed: Routed,
    request_id: &str,
    permit: Option<ConnectionPermit>,
) -> Response<ProxyBody> {
    let machine_upgrade = hyper::upgrade::on(&mut response);
    let machine = &routed.machine;
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
    let tunnel_guard = routed.machine.tunnels.open();
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
            routed.in_flight,
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

fn machine_uri(original: &Uri, machine: &Machine, port: u16) -> Uri {
    let authority = Authority::try_from(format!("{}:{port}", machine.private_ip))
        .expect("ip:port is an authority");
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

/// The error and its causes on one line, for the client and the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
