//! The edge proxy. A request's path, top to bottom in `Proxy::serve`: an ACME HTTP-01
//! validation is answered by the edge itself (`challenge`), before anything else; route
//! (Host → app), place (regions nearest the client), ready (the lifecycle picks a machine and
//! wakes it if it sleeps), forward (to the machine, and the answer back), respond
//! (errors become statuses). An idempotent request whose machine could not be reached
//! at all is sent to the next machine.

mod challenge;
mod forward;
pub mod headers;
pub mod place;
mod respond;
pub mod route;
pub mod tunnel;
pub mod upstream;

pub use respond::{ProxyError, error_response, text_response};
pub use upstream::UpstreamError;

use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::lifecycle::{Plan, Ready, Supervisor};
use crate::machines::App;
use crate::tls::challenges::Challenges;
use crate::trusted::Trusted;
use bytes::Bytes;
use forward::{Unreached, Upstreams};
use headers::Forwarded;
use http::{Request, Response};
use hyper::body::Incoming;
use place::Regions;
use std::net::SocketAddr;
use std::sync::Arc;

/// The body of every response the proxy sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

/// How many machines a request tries when it cannot connect to one (it was not sent,
/// so another machine may take it).
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// The client connection's slot under `edge.max_connections`, carried by each request so
/// an upgraded connection (a WebSocket tunnel) keeps holding it after HTTP is done.
#[derive(Clone)]
pub struct ConnectionPermit(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// Facts about the listener a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Inbound {
    /// The public port whose services this listener serves (80 for HTTP).
    pub service_port: u16,
    pub scheme: &'static str,
    /// Trusted peers start their connections with a PROXY protocol header.
    pub proxy_protocol: bool,
}

pub struct Proxy {
    supervisor: Arc<Supervisor>,
    settings: ProxySettings,
    upstreams: Upstreams,
}

/// What the proxy knows about the edge and its clients.
pub struct ProxySettings {
    pub domains: Vec<String>,
    pub edge_region: String,
    pub regions: Regions,
    pub geo: GeoDb,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted: Trusted,
    /// Hostnames added to apps (custom domains).
    pub hostnames: Arc<Hostnames>,
    /// ACME HTTP-01 answers, served on the HTTP listener.
    pub challenges: Arc<Challenges>,
}

impl Proxy {
    pub fn new(supervisor: Arc<Supervisor>, settings: ProxySettings) -> Proxy {
        Proxy {
            supervisor,
            settings,
            upstreams: Upstreams::new(),
        }
    }

    /// Serves one request; errors become responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let request_id = format!("{}-{}", crate::ids::ulid(), self.settings.edge_region);
        match self.serve(req, inbound, peer, &request_id).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(%peer, "proxy error: {error}");
                let mut response = error_response(&error);
                if let Ok(value) = request_id.parse() {
                    response
                        .headers_mut()
                        .insert(headers::FLY_REQUEST_ID, value);
                }
                response
            }
        }
    }

    async fn serve(
        &self,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
        request_id: &str,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if inbound.scheme == "http"
            && let Some(answer) = challenge::answer(&self.settings.challenges, &req)
        {
            return Ok(answer);
        }
        let host = route::request_host(&req).ok_or(ProxyError::MissingHost)?;
        let app = self.route(&host)?;
        if inbound.scheme == "http" && forces_https(&app, inbound.service_port) {
            return Ok(respond::redirect_to_https(&host, req.uri()));
        }
        let client_ip = self.settings.trusted.client_ip(peer.ip(), req.headers());
        let location = self.settings.geo.locate(client_ip);
        let mut plan = place::plan(&self.settings.regions, location, req.headers());
        let fwd = Forwarded {
            client_ip,
            peer_ip: peer.ip(),
            host: &host,
            scheme: inbound.scheme,
            public_port: inbound.service_port,
            edge_region: &self.settings.edge_region,
        };
        let mut prepared = forward::prepare(req, &fwd);
        let mut unreached = None;
        loop {
            let ready = match self.ready(&app, inbound.service_port, &plan).await {
                Ok(ready) => ready,
                // Nothing else can take it: the machine that could not be reached is
                // what the client should hear about.
                Err(e) => return Err(unreached.unwrap_or(e)),
            };
            let Unreached {
                machine,
                error,
                again,
            } = match forward::send(&self.upstreams, prepared, ready, request_id).await {
                Ok(response) => return Ok(response),
                Err(unreached) => unreached,
            };
            plan.avoid.push(machine.clone());
            let error = ProxyError::Upstream { machine, error };
            match again {
                Some(again) if plan.avoid.len() < MAX_CONNECT_ATTEMPTS => {
                    tracing::debug!("trying another machine: {error}");
                    unreached = Some(error);
                    prepared = again;
                }
                _ => return Err(error),
            }
        }
    }

    fn route(&self, host: &str) -> Result<Arc<App>, ProxyError> {
        let registry = &self.supervisor.registry;
        let hostnames = &self.settings.hostnames;
        route::route(registry, hostnames, &self.settings.domains, host)
    }

    async fn ready(&self, app: &App, port: u16, plan: &Plan) -> Result<Ready, ProxyError> {
        Ok(self.supervisor.ready(app, port, plan).await?)
    }

    /// The app at `host` if its service on `port` terminates TLS and passes bytes on
    /// (`handlers = ["tls"]`), rather than speaking HTTP.
    pub fn raw_tcp_app(&self, host: &str, port: u16) -> Option<Arc<App>> {
        let app = self.route(&host.to_ascii_lowercase()).ok()?;
        let passthrough = app.with_machines(|machines| {
            machines.iter().any(|m| {
                m.spec()
                    .port_for(port)
                    .is_some_and(|(_, p)| p.is_tls_passthrough())
            })
        });
        passthrough.then_some(app)
    }

    /// Wakes a machine of `app` and joins the client's decrypted stream to its port.
    pub async fn tunnel_tcp<S>(&self, app: &App, port: u16, client: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let location = self.settings.geo.locate(peer.ip());
        let plan = place::plan(&self.settings.regions, location, &http::HeaderMap::new());
        let ready = match self.ready(app, port, &plan).await {
            Ok(ready) => ready,
            Err(e) => return tracing::debug!(app = %app.record.name, "TCP tunnel not opened: {e}"),
        };
        let addr = SocketAddr::from((ready.machine.private_ip, ready.internal_port));
        match tokio::net::TcpStream::connect(addr).await {
            Ok(machine) => {
                let guard = ready.machine.tunnels.open();
                tunnel::pump(
                    client,
                    machine,
                    tunnel::Carried::Bytes,
                    guard,
                    ready.in_flight,
                )
                .await;
            }
            Err(e) => tracing::debug!(machine = %ready.machine.id, "TCP tunnel: {e}"),
        }
    }
}

/// Whether the app's services on this (plain HTTP) port say `force_https`.
fn forces_https(app: &App, port: u16) -> bool {
    app.with_machines(|machines| {
        machines
            .iter()
            .filter(|m| !m.is_gone())
            .any(|m| m.spec().port_for(port).is_some_and(|(_, p)| p.force_https))
    })
}
