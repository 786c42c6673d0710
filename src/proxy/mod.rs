//! The edge proxy. A request's path, top to bottom in `Proxy::serve`: an ACME HTTP-01
//! validation is answered by the edge itself (`challenge`), before anything else; route
//! (Host → app), place (regions nearest the client), ready (the lifecycle picks a machine and
//! wakes it if it sleeps), forward (to the machine, and the answer back), respond
//! (errors become statuses). An idempotent request whose machine could not be reached
//! at all is sent to the next machine.

mod challenge;
mod forward;
pub mod h1;
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
use arc_swap::ArcSwap;
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
    /// Swapped whole by a reload. A request reads it once (a few uncontended atomic
    /// operations, no reference count touched) in its synchronous first phases and lets
    /// go of it before its first await.
    settings: ArcSwap<ProxySettings>,
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
            settings: ArcSwap::from_pointee(settings),
            upstreams: Upstreams::new(),
        }
    }

    /// Replaces the settings (a config reload); requests already placed keep their plan.
    pub fn set_settings(&self, settings: ProxySettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Serves one request; errors become responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        // The settings' one read for this request, let go of before the first await.
        let settings = self.settings.load();
        let request_id = format!("{}-{}", crate::ids::ulid(), settings.edge_region);
        let admitted = self.admit(&settings, req, inbound, peer);
        drop(settings);
        let outcome = match admitted {
            Ok(Admitted::Answered(response)) => Ok(response),
            Ok(Admitted::Routed(routed)) => self.serve(routed, inbound, &request_id).await,
            Err(error) => Err(error),
        };
        match outcome {
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

    /// The phases that need no waiting for a request the hyper path serves: its
    /// upgrade and connection extensions taken out, then `decide`.
    fn admit(
        &self,
        settings: &ProxySettings,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
    ) -> Result<Admitted, ProxyError> {
        let mut carried = forward::ClientRequest::take(req);
        Ok(
            match decide(self, settings, &mut carried.req, inbound, peer)? {
                Decision::Answered(answer) => Admitted::Answered(answer),
                Decision::Routed { app, plan } => Admitted::Routed(Routed {
                    app,
                    plan,
                    prepared: carried.prepared(),
                }),
            },
        )
    }

    /// A ready machine (woken if need be), then the request forwarded to it; a request
    /// the machine never saw goes to the next one.
    async fn serve(
        &self,
        routed: Routed,
        inbound: Inbound,
        request_id: &str,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let Routed {
            app,
            mut plan,
            mut prepared,
        } = routed;
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

    fn route(&self, settings: &ProxySettings, host: &str) -> Result<Arc<App>, ProxyError> {
        let registry = &self.supervisor.registry;
        route::route(registry, &settings.hostnames, &settings.domains, host)
    }

    async fn ready(&self, app: &App, port: u16, plan: &Plan) -> Result<Ready, ProxyError> {
        Ok(self.supervisor.ready(app, port, plan).await?)
    }

    /// The app at `host` if its service on `port` terminates TLS and passes bytes on
    /// (`handlers = ["tls"]`), rather than speaking HTTP.
    pub fn raw_tcp_app(&self, host: &str, port: u16) -> Option<Arc<App>> {
        let app = self
            .route(&self.settings.load(), &host.to_ascii_lowercase())
            .ok()?;
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
        let plan = {
            let settings = self.settings.load();
            let location = settings.geo.locate(peer.ip());
            place::plan(&settings.regions, location, &http::HeaderMap::new())
        };
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

/// What the synchronous phases decided about a request, on either path.
pub(crate) enum Decision {
    /// Answered without a machine (an ACME token, the redirect to https).
    Answered(Response<ProxyBody>),
    /// For a machine of `app`, along `plan`; the headers are rewritten for it.
    Routed { app: Arc<App>, plan: Plan },
}

/// The phases that need no waiting: route (Host → app), the `force_https` answer,
/// place (the client's regions), and the request's headers rewritten for a machine.
fn decide<B>(
    proxy: &Proxy,
    settings: &ProxySettings,
    req: &mut Request<B>,
    inbound: Inbound,
    peer: SocketAddr,
) -> Result<Decision, ProxyError> {
    if inbound.scheme == "http"
        && let Some(answer) = challenge::answer(&settings.challenges, req)
    {
        return Ok(Decision::Answered(answer));
    }
    let host = route::request_host(req).ok_or(ProxyError::MissingHost)?;
    let app = proxy.route(settings, &host)?;
    if inbound.scheme == "http" && forces_https(&app, inbound.service_port) {
        let redirect = respond::redirect_to_https(&host, req.uri());
        return Ok(Decision::Answered(redirect));
    }
    let client_ip = settings.trusted.client_ip(peer.ip(), req.headers());
    let location = settings.geo.locate(client_ip);
    let plan = place::plan(&settings.regions, location, req.headers());
    let fwd = Forwarded {
        client_ip,
        peer_ip: peer.ip(),
        host: &host,
        scheme: inbound.scheme,
        public_port: inbound.service_port,
        edge_region: &settings.edge_region,
    };
    headers::to_machine(req.headers_mut(), &fwd);
    Ok(Decision::Routed { app, plan })
}

/// What the synchronous phases decided.
// Made and moved once per request: boxing the large variant would add an allocation to
// every request to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Admitted {
    /// Answered without a machine (the redirect to https).
    Answered(Response<ProxyBody>),
    Routed(Routed),
}

/// A request routed and placed, ready to be sent to a machine of its app.
struct Routed {
    app: Arc<App>,
    plan: Plan,
    prepared: forward::Prepared,
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
