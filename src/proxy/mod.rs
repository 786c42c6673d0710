//! The edge proxy. A request's path, top to bottom in `Proxy::serve`: admit (what is
//! refused before anything else), route (its authority → app), place (regions nearest
//! the client), ready (the lifecycle picks a machine and wakes it if it sleeps),
//! forward (to the machine, and the answer back), respond (errors become statuses). An
//! idempotent request whose machine could not be reached at all is sent to the next
//! machine.

mod admit;
mod forward;
pub mod headers;
pub mod place;
mod pool;
mod respond;
pub mod route;
pub mod tunnel;
pub mod upstream;

pub use respond::{ProxyError, error_response};
pub use upstream::UpstreamError;

use crate::connection::{BoxError, MachinePolicy, Pace, PacedBody, UpstreamLimits};
use crate::geo::GeoDb;
use crate::lifecycle::{Plan, Ready, Supervisor};
use crate::machines::App;
use crate::trusted::Trusted;
use bytes::Bytes;
use forward::{Unreached, Upstreams};
use headers::Forwarded;
use http::{Request, Response};
use hyper::body::Incoming;
use place::Regions;
use route::Target;
use std::net::SocketAddr;
use std::sync::Arc;

/// The body of every response the proxy sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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
    /// How slowly a client may send a request body.
    pub client_body: Pace,
    /// How machines are reached: how many connections, how paced.
    pub upstream_limits: UpstreamLimits,
    pub machine_policy: MachinePolicy,
}

impl Proxy {
    /// A proxy for `supervisor`'s machines; spawns the pool's idle sweeper, so it is made
    /// inside the runtime.
    pub fn new(supervisor: Arc<Supervisor>, settings: ProxySettings) -> Proxy {
        let upstreams = Upstreams::new(settings.upstream_limits, settings.machine_policy);
        Proxy {
            supervisor,
            settings,
            upstreams,
        }
    }

    /// Serves one request; errors become responses: a short message and the request id
    /// for the client, the details for the log.
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
                respond::log(&error, &request_id, peer);
                error_response(&error, &request_id)
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
        admit::admit(&req)?;
        let target = Target::of(&req)?;
        let app = self.route(&target.host)?;
        if inbound.scheme == "http" && forces_https(&app, inbound.service_port) {
            return Ok(respond::redirect_to_https(&target.host, req.uri()));
        }
        let mut req = req.map(|body| PacedBody::new(body, self.settings.client_body));
        admit::first_chunk(&mut req).await?;
        let client_ip = self.settings.trusted.client_ip(peer.ip(), req.headers());
        let location = self.settings.geo.locate(client_ip);
        let mut plan = place::plan(&self.settings.regions, location, req.headers());
        let fwd = Forwarded {
            client_ip,
            peer_ip: peer.ip(),
            host: &target.host,
            authority: &target.authority,
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
        route::route(registry, &self.settings.domains, host)
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
        let upstreams = &self.upstreams;
        let send = upstreams.policy.send;
        match upstream::connect_tcp(addr, &upstreams.budget, send).await {
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
