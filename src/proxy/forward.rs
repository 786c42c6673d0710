//! Phase 5, forward: the request goes to the machine over a pooled HTTP/1.1 client,
//! bodies streamed both ways; an in-flight guard rides along until the response body
//! is done, so a machine is never idle while it is still answering.

use super::ProxyBody;
use super::headers::{self, Forwarded};
use super::respond::ProxyError;
use crate::machines::Machine;
use crate::machines::activity::InFlight;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection to a machine is kept.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);

pub type Upstream = Client<HttpConnector, Incoming>;

/// The pooled client used to reach machines.
pub fn upstream_client() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(UPSTREAM_POOL_IDLE)
        .build(connector)
}

/// The machine a request was routed to, counted in flight.
pub struct Routed {
    pub machine: Arc<Machine>,
    pub internal_port: u16,
    pub in_flight: InFlight,
}

pub async fn forward(
    client: &Upstream,
    mut req: Request<Incoming>,
    fwd: &Forwarded<'_>,
    routed: Routed,
    request_id: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let machine = routed.machine.clone();
    *req.uri_mut() = machine_uri(req.uri(), &machine, routed.internal_port);
    *req.version_mut() = Version::HTTP_11;
    headers::to_machine(req.headers_mut(), fwd);
    let response = client
        .request(req)
        .await
        .map_err(|e| ProxyError::Upstream {
            machine: machine.id.clone(),
            message: error_chain(&e),
        })?;
    let (mut parts, body) = response.into_parts();
    headers::to_client(&mut parts.headers, &machine.id, request_id);
    let guard = routed.in_flight;
    let body = body
        .map_frame(move |frame| {
            let _ = &guard; // held until the body is finished or dropped
            frame
        })
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
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
