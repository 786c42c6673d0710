//! The edge proxy. A request's path, top to bottom in `Proxy::serve`: an ACME HTTP-01
//! validation is answered by the edge itself (`challenge`), before anything else; route
//! (Host → app), place (regions nearest the client), ready (the lifecycle picks a machine and
//! wakes it if it sleeps), forward (to the machine, and the answer back), respond
//! (errors become statuses). An idempotent request whose machine could not be reached
//! at all is sent to the next machine.

mod challenge;
mod forward;
pub mod headers;
pub mod keep_awake;
pub mod no_wake;
pub mod place;
pub mod replay;
mod report;
mod respond;
pub mod route;
pub mod tunnel;
pub mod upstream;
pub mod wake_early;
pub mod wake_page;

pub use report::WAKE_HEADER;
pub use respond::{ProxyError, error_response, text_response};
pub use upstream::UpstreamError;

use crate::config::{NoWakeConfig, ReplayConfig, WakeConfig};
use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::lifecycle::{AcquireError, Manner, OnSleep, Plan, Ready, Supervisor};
use crate::machines::App;
use crate::machines::spec::MachineSpec;
use crate::metrics::InFlightGauge;
use crate::tls::challenges::Challenges;
use crate::trusted::Trusted;
use bytes::Bytes;
use forward::{Prepared, Unreached, Upstreams};
use headers::Forwarded;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use place::Regions;
use report::{Asked, Served};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;
use upstream::MachineBody;

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
    replay_budget: replay::Budget,
    page: wake_page::WakePage,
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
    pub wake: WakeConfig,
    pub no_wake: NoWakeConfig,
    pub replay: ReplayConfig,
    /// The operator's wake page (`wake.page_template`, read at start), else the built-in.
    pub wake_page: Option<String>,
    /// Whether each request gets an access-log line.
    pub access_log: bool,
}

/// The request on its way to a machine: as the client sent it (not yet kept for a
/// replay), sent again after a replay, or prepared and not reached (for another).
enum Outgoing {
    Fresh(Request<Incoming>),
    Again(Request<MachineBody>),
    Prepared(Prepared),
}

impl Proxy {
    pub fn new(supervisor: Arc<Supervisor>, settings: ProxySettings) -> Proxy {
        Proxy {
            supervisor,
            replay_budget: replay::Budget::new(settings.replay.budget),
            page: wake_page::WakePage::new(settings.wake_page.clone()),
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
        let began = Instant::now();
        let metrics = &self.supervisor.metrics;
        let _counted = InFlightGauge::enter(&metrics.in_flight);
        let request_id = format!("{}-{}", crate::ids::ulid(), self.settings.edge_region);
        let asked = self.settings.access_log.then(|| Asked {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
        });
        let mut served = Served::default();
        let response = match self
            .serve(req, inbound, peer, &request_id, &mut served)
            .await
        {
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
        };
        report::finish(response, served, asked, &request_id, metrics, began)
    }

    async fn serve(
        &self,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
        request_id: &str,
        served: &mut Served,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if inbound.scheme == "http"
            && let Some(answer) = challenge::answer(&self.settings.challenges, &req)
        {
            return Ok(answer);
        }
        let host = route::request_host(&req).ok_or(ProxyError::MissingHost)?;
        let mut app = self.route(&host)?;
        served.app = app.record.name.clone();
        let port = inbound.service_port;
        if inbound.scheme == "http" && forces_https(&app, port) {
            return Ok(respond::redirect_to_https(&host, req.uri()));
        }
        let client_ip = self.settings.trusted.client_ip(peer.ip(), req.headers());
        let location = self.settings.geo.locate(client_ip);
        let mut plan = place::plan(&self.settings.regions, location, req.headers());
        let spec = serving_spec(&app, port);
        let mut manner = self.manner(spec.as_deref(), port, &req);
        let head = req.method() == Method::HEAD;
        let fwd = Forwarded {
            client_ip,
            peer_ip: peer.ip(),
            host: &host,
            scheme: inbound.scheme,
            public_port: port,
            edge_region: &self.settings.edge_region,
        };
        let mut outgoing = Outgoing::Fresh(req);
        let mut kept = None;
        let mut hops = 0;
        let mut unreached = None;
        loop {
            let ready = match self.supervisor.ready_in(&app, port, &plan, manner).await {
                Ok(ready) => ready,
                Err(AcquireError::Asleep { waking, .. }) => {
                    return Ok(self.asleep(&app.record.name, spec.as_deref(), port, waking, head));
                }
                // Nothing else can take it: the machine that could not be reached is
                // what the client should hear about.
                Err(e) => return Err(unreached.unwrap_or(ProxyError::from(e))),
            };
            served.add_wait(ready.waited);
            let prepared = match outgoing {
                Outgoing::Fresh(req) => {
                    let (req, copy) =
                        replay::keep(req, &self.settings.replay, &self.replay_budget).await?;
                    kept = Some(copy);
                    forward::prepare(req, &fwd)
                }
                Outgoing::Again(req) => forward::prepare(req, &fwd),
                Outgoing::Prepared(prepared) => prepared,
            };
            let machine = ready.machine.clone();
            let Unreached {
                machine: missed,
                error,
                again,
            } = match forward::send(&self.upstreams, prepared, ready, request_id).await {
                Ok(mut response) => {
                    served.machine = machine.id.clone();
                    served.region = machine.region.clone();
                    let max = self.settings.wake.keep_awake_max;
                    keep_awake::take(&self.supervisor, &machine, response.headers_mut(), max);
                    let Some(target) = replay::requested(&response) else {
                        return Ok(response);
                    };
                    hops += 1;
                    let again =
                        self.replay(target, hops, kept.as_ref(), &machine, &mut plan, &mut app);
                    outgoing = Outgoing::Again(again.inspect_err(|e| self.count_replay(&app, e))?);
                    served.app = app.record.name.clone();
                    // A replay goes where the machine said, waking what it must.
                    manner = Manner::default();
                    unreached = None;
                    continue;
                }
                Err(unreached) => unreached,
            };
            plan.avoid.push(missed.clone());
            let error = ProxyError::Upstream {
                machine: missed,
                error,
            };
            match again {
                Some(again) if plan.avoid.len() < MAX_CONNECT_ATTEMPTS => {
                    tracing::debug!("trying another machine: {error}");
                    unreached = Some(error);
                    outgoing = Outgoing::Prepared(again);
                }
                _ => return Err(error),
            }
        }
    }

    /// How this request treats a sleeping machine: a no-wake request neither wakes it
    /// nor keeps it awake; a browser's navigation gets the wake page where the app asks.
    fn manner(&self, spec: Option<&MachineSpec>, port: u16, req: &Request<Incoming>) -> Manner {
        let rules = spec.and_then(|s| s.http_rules(port));
        let no_wake = rules.and_then(|r| r.no_wake());
        let path = req.uri().path();
        if no_wake::matches(
            no_wake,
            &self.settings.no_wake,
            req.method(),
            path,
            req.headers(),
        ) {
            return Manner {
                on_sleep: OnSleep::Leave,
                quiet: true,
            };
        }
        let page = rules
            .and_then(|r| r.wake_page())
            .unwrap_or(self.settings.wake.page);
        let on_sleep = match page && wake_page::is_navigation(req.method(), req.headers()) {
            true => OnSleep::Begin,
            false => OnSleep::Wake,
        };
        Manner {
            on_sleep,
            quiet: false,
        }
    }

    /// The edge's own answer while the app sleeps: the wake page (its wake begun), or
    /// the sleeping answer to a no-wake request.
    fn asleep(
        &self,
        app: &str,
        spec: Option<&MachineSpec>,
        port: u16,
        waking: bool,
        head: bool,
    ) -> Response<ProxyBody> {
        let metrics = &self.supervisor.metrics;
        let retry = self.settings.wake.retry_after_secs;
        if waking {
            crate::metrics::Metrics::count(&metrics.edge_answers, app, "wake_page");
            return self.page.response(app, retry);
        }
        crate::metrics::Metrics::count(&metrics.edge_answers, app, "no_wake");
        let rules = spec.and_then(|s| s.http_rules(port));
        let status = rules.and_then(|r| r.no_wake()).and_then(|r| r.status);
        no_wake::answer(app, status, &self.settings.no_wake, retry, head)
    }

    /// Turns a machine's fly-replay into the request to send next, moving the plan
    /// (and the app) where it points.
    fn replay(
        &self,
        target: Result<replay::Target, replay::ReplayError>,
        hops: usize,
        kept: Option<&replay::Kept>,
        machine: &crate::machines::Machine,
        plan: &mut Plan,
        app: &mut Arc<App>,
    ) -> Result<Request<MachineBody>, replay::ReplayError> {
        let target = target?;
        if hops > self.settings.replay.max_hops {
            return Err(replay::ReplayError::TooMany(self.settings.replay.max_hops));
        }
        let kept = kept.ok_or(replay::ReplayError::BodyNotKept)?;
        let again = kept.again(&machine.id, &machine.region, target.state.as_deref())?;
        if let Some(name) = &target.app {
            *app = self
                .supervisor
                .registry
                .app(name)
                .ok_or_else(|| replay::ReplayError::NoApp(name.clone()))?;
        }
        *plan = target.plan(plan, &machine.id);
        crate::metrics::Metrics::count(
            &self.supervisor.metrics.replays,
            &app.record.name,
            "replayed",
        );
        Ok(again)
    }

    fn count_replay(&self, app: &App, error: &replay::ReplayError) {
        let outcome = match error {
            replay::ReplayError::TooMany(_) => "too_many",
            replay::ReplayError::BodyNotKept | replay::ReplayError::Body(_) => "body",
            replay::ReplayError::NoApp(_) | replay::ReplayError::NoTarget(_) => "no_target",
        };
        crate::metrics::Metrics::count(&self.supervisor.metrics.replays, &app.record.name, outcome);
    }

    /// Begins waking the app a TLS ClientHello names, if it asks to be woken so early.
    pub fn wake_early(&self, host: &str, port: u16, peer: SocketAddr) {
        let Ok(app) = self.route(host) else { return };
        let spec = serving_spec(&app, port);
        let rules = spec.as_deref().and_then(|s| s.http_rules(port));
        if !rules
            .and_then(|r| r.wake_early())
            .unwrap_or(self.settings.wake.early)
        {
            return;
        }
        let location = self.settings.geo.locate(peer.ip());
        let plan = place::plan(&self.settings.regions, location, &http::HeaderMap::new());
        self.supervisor.wake_early(&app, port, &plan);
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

/// The config of a machine of the app serving `port`: where the app's rules for
/// requests on it are read (the machines of an app share them, as Fly's do).
fn serving_spec(app: &App, port: u16) -> Option<Arc<MachineSpec>> {
    app.with_machines(|machines| {
        machines
            .iter()
            .filter(|m| !m.is_gone())
            .map(|m| m.spec())
            .find(|spec| spec.port_for(port).is_some())
    })
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
