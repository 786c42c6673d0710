//! The edge proxy: each request goes through small phases — route (Host → app), pick (a
//! machine serving the listener's port), wake (if it is stopped), forward, respond.

mod forward;
pub mod headers;
pub mod pick;
pub mod place;
mod respond;
pub mod route;
pub mod tunnel;
pub mod upstream;

pub use respond::{ProxyError, error_response};

use crate::geo::GeoDb;
use crate::machines::{App, EventSource, MachineState, Registry, Supervisor};
use crate::trusted::Trusted;
use crate::wake::WakeError;
use bytes::Bytes;
use dashmap::DashMap;
use forward::{Routed, Upstreams};
use headers::Forwarded;
use http::{Request, Response};
use hyper::body::Incoming;
use pick::Action;
use place::{Plan, Regions};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// The body of every response the proxy sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

/// How many times a request may find its machine stopped again right after a wake
/// (an operator stopped it meanwhile) before it gives up.
const MAX_WAKE_ATTEMPTS: usize = 4;

/// The client connection's slot under `edge.max_connections`, carried by each request so
/// an upgraded connection (a WebSocket tunnel) keeps holding it after HTTP is done.
#[derive(Clone)]
pub struct ConnectionPermit(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// Facts about the listener and connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// The public port whose services this listener serves (80 for HTTP).
    pub service_port: u16,
    pub scheme: &'static str,
    /// Trusted peers start their connections with a PROXY protocol header.
    pub proxy_protocol: bool,
}

pub struct Proxy {
    registry: Arc<Registry>,
    supervisor: Arc<Supervisor>,
    settings: ProxySettings,
    upstreams: Upstreams,
    /// Requests waiting for room, per app.
    queued: DashMap<String, usize>,
}

/// What the proxy knows about the edge and its clients.
pub struct ProxySettings {
    pub domains: Vec<String>,
    pub edge_region: String,
    pub regions: Regions,
    pub geo: GeoDb,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted: Trusted,
    /// How long a request waits when every machine is at its hard limit.
    pub queue_timeout: std::time::Duration,
    /// How many requests per app may wait so.
    pub max_queued: usize,
}

/// How often a queued request looks for room.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Proxy {
    pub fn new(supervisor: Arc<Supervisor>, settings: ProxySettings) -> Proxy {
        Proxy {
            registry: supervisor.registry.clone(),
            supervisor,
            settings,
            upstreams: Upstreams::new(),
            queued: DashMap::new(),
        }
    }

    /// Serves one request; errors become responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        listener: Listener,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let request_id = format!("{}-{}", crate::ids::ulid(), self.settings.edge_region);
        match self.serve(req, listener, peer, &request_id).await {
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
        listener: Listener,
        peer: SocketAddr,
        request_id: &str,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let host = route::request_host(&req).ok_or(ProxyError::MissingHost)?;
        let app = route::route(&self.registry, &self.settings.domains, &host)?;
        if listener.scheme == "http" && forces_https(&app, listener.service_port) {
            return Ok(respond::redirect_to_https(&host, req.uri()));
        }
        let client_ip = self.settings.trusted.client_ip(peer.ip(), req.headers());
        let plan = Plan::new(
            &self.settings.regions,
            self.settings.geo.locate(client_ip),
            req.headers(),
        );
        let routed = self.acquire(&app, listener.service_port, &plan).await?;
        let fwd = Forwarded {
            client_ip,
            peer_ip: peer.ip(),
            host: &host,
            scheme: listener.scheme,
            public_port: listener.service_port,
            edge_region: &self.settings.edge_region,
        };
        forward::forward(&self.upstreams, req, &fwd, routed, request_id).await
    }

    /// Finds a started machine for the request, waking one if needed. The request is
    /// counted in flight before it checks the state, which keeps the reaper off it.
    ///
    /// A machine that fails to wake is set aside and the request placed again, so a
    /// failure in the nearest region falls back to the next one; the last failure is
    /// reported when nothing else can serve.
    async fn acquire(&self, app: &App, port: u16, plan: &Plan) -> Result<Routed, ProxyError> {
        match self.acquire_once(app, port, plan).await {
            Err(ProxyError::AtHardLimit { .. }) => self.queue(app, port, plan).await,
            other => other,
        }
    }

    /// Every machine that could serve is at its hard limit: wait for room, a bounded
    /// number of requests per app for a bounded time, then 503 with `Retry-After`.
    async fn queue(&self, app: &App, port: u16, plan: &Plan) -> Result<Routed, ProxyError> {
        let full = || ProxyError::AtHardLimit {
            app: app.record.name.clone(),
        };
        let Some(_place) =
            QueuePlace::take(&self.queued, &app.record.name, self.settings.max_queued)
        else {
            return Err(full());
        };
        let deadline = tokio::time::Instant::now() + self.settings.queue_timeout;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(QUEUE_POLL).await;
            match self.acquire_once(app, port, plan).await {
                Err(ProxyError::AtHardLimit { .. }) => continue,
                other => return other,
            }
        }
        Err(full())
    }

    async fn acquire_once(&self, app: &App, port: u16, plan: &Plan) -> Result<Routed, ProxyError> {
        let mut failed = HashSet::new();
        let mut last_failure = None;
        for _ in 0..MAX_WAKE_ATTEMPTS {
            let picked =
                match pick::pick(app, port, plan, &failed, |m| self.supervisor.is_waking(m)) {
                    Ok(picked) => picked,
                    Err(e) => return Err(last_failure.unwrap_or(e)),
                };
            let machine = picked.machine;
            let in_flight = machine.enter();
            if over_hard_limit(&machine, port) {
                // Another request took the last place between the pick and now.
                return Err(ProxyError::AtHardLimit {
                    app: app.record.name.clone(),
                });
            }
            if picked.action == Action::Wake {
                match self.supervisor.wake(&machine, EventSource::Edgewake).await {
                    Ok(()) => {}
                    // Destroyed meanwhile: pick again among the others.
                    Err(WakeError::Gone) => continue,
                    Err(error) => {
                        failed.insert(machine.id.clone());
                        last_failure = Some(ProxyError::Wake {
                            machine: machine.id.clone(),
                            error,
                        });
                        continue;
                    }
                }
            }
            if machine.state() == MachineState::Started {
                let spec = machine.spec();
                let (internal_port, h2_backend) =
                    spec.port_for(port).map_or((8080, false), |(s, p)| {
                        (s.internal_port, p.http_options.h2_backend)
                    });
                let preferred_unavailable = picked.preferred_unavailable;
                return Ok(Routed {
                    machine,
                    internal_port,
                    h2_backend,
                    preferred_unavailable,
                    in_flight,
                });
            }
        }
        Err(last_failure.unwrap_or(ProxyError::NoMachines {
            app: app.record.name.clone(),
            port,
        }))
    }
}

impl Proxy {
    /// The app at `host` if its service on `port` terminates TLS and passes bytes on
    /// (`handlers = ["tls"]`), rather than speaking HTTP.
    pub fn raw_tcp_app(&self, host: &str, port: u16) -> Option<Arc<App>> {
        let app = route::route(
            &self.registry,
            &self.settings.domains,
            &host.to_ascii_lowercase(),
        )
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
        let location = self.settings.geo.locate(peer.ip());
        let plan = Plan::new(&self.settings.regions, location, &http::HeaderMap::new());
        let routed = match self.acquire(app, port, &plan).await {
            Ok(routed) => routed,
            Err(e) => return tracing::debug!(app = %app.record.name, "TCP tunnel not opened: {e}"),
        };
        let addr = SocketAddr::from((routed.machine.private_ip, routed.internal_port));
        match tokio::net::TcpStream::connect(addr).await {
            Ok(machine) => {
                let guard = routed.machine.tunnels.open();
                tunnel::pump(
                    client,
                    machine,
                    tunnel::Carried::Bytes,
                    guard,
                    routed.in_flight,
                )
                .await;
            }
            Err(e) => tracing::debug!(machine = %routed.machine.id, "TCP tunnel: {e}"),
        }
    }
}

/// Whether the machine now has more requests in flight than its hard limit allows.
fn over_hard_limit(machine: &crate::machines::Machine, port: u16) -> bool {
    let limit = machine
        .spec()
        .service_for_port(port)
        .and_then(|s| s.concurrency.hard_limit);
    limit.is_some_and(|limit| machine.activity.in_flight() > limit)
}

/// A request's place in an app's queue; gives it back when dropped.
struct QueuePlace<'a> {
    queued: &'a DashMap<String, usize>,
    app: String,
}

impl<'a> QueuePlace<'a> {
    fn take(queued: &'a DashMap<String, usize>, app: &str, max: usize) -> Option<QueuePlace<'a>> {
        let mut count = queued.entry(app.to_string()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(QueuePlace {
            queued,
            app: app.to_string(),
        })
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if let Some(mut count) = self.queued.get_mut(&self.app) {
            *count = count.saturating_sub(1);
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
