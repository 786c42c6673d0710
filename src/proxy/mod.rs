//! The edge proxy. A request's path, top to bottom in `Proxy::handle`: an ACME HTTP-01
//! validation is answered by the edge itself (`challenge`), before anything else;
//! checks (what is refused before anything is routed or woken), route (the request's
//! one authority → app), place (regions nearest the client), ready (the lifecycle picks
//! a machine and wakes it if it sleeps), forward (to the machine, and the answer back),
//! respond (errors become statuses and short bodies). A request whose machine could not
//! be reached at all is sent to the next machine.

pub mod asleep;
mod challenge;
mod checks;
mod forward;
pub mod h1;
pub mod headers;
pub mod keep_awake;
pub mod no_wake;
pub mod place;
mod pool;
mod raw_tcp;
mod relay;
pub mod replay;
mod report;
mod respond;
pub mod route;
mod to_node;
pub mod tunnel;
pub mod upstream;
pub mod wake_early;
pub mod wake_page;

pub use report::WAKE_HEADER;
pub use respond::{ProxyError, error_response, text_response};
pub use upstream::UpstreamError;

use crate::cluster::BackhaulKey;
use crate::config::ReplayConfig;
use crate::connection::{BoxError, MachinePolicy, Pace, PacedBody, UpstreamLimits};
use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::lifecycle::{AcquireError, Manner, Plan, Ready, Supervisor};
use crate::machines::App;
use crate::machines::spec::{MachineSpec, RulesView};
use crate::metrics::InFlightGauge;
use crate::tls::challenges::Challenges;
use crate::trusted::Trusted;
use arc_swap::ArcSwap;
use bytes::Bytes;
use forward::{Prepared, Unreached, Upstreams};
use headers::Forwarded;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use place::Regions;
use report::{Asked, Served};
use route::Target;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use upstream::{ClientBody, MachineBody};

/// The body of every response the proxy sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// How many machines a request tries when it cannot connect to one (it was not sent,
/// so another machine may take it).
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// The client connection's slot under `edge.max_connections` (and whatever else the
/// edge counts it by, such as its worker's open connections), carried by each request
/// so an upgraded connection (a WebSocket tunnel) keeps holding it after HTTP is done.
#[derive(Clone)]
pub struct ConnectionPermit(pub Arc<dyn std::any::Any + Send + Sync>);

/// Facts about the listener a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Inbound {
    /// The public port whose services this listener serves (80 for HTTP).
    pub service_port: u16,
    pub scheme: &'static str,
    /// Trusted peers start their connections with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The backhaul listener: requests other edges of the cluster relay, signed.
    pub backhaul: bool,
}

pub struct Proxy {
    supervisor: Arc<Supervisor>,
    /// Swapped whole by a reload. A request takes it once and keeps it to its end (one
    /// reference count), so a reload never changes the rules under a request.
    settings: ArcSwap<ProxySettings>,
    upstreams: Upstreams,
    /// Bytes of request bodies kept for a replay, shared by all requests (sized at start).
    replay_budget: replay::Budget,
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
    /// How slowly a client may send a request body.
    pub client_body: Pace,
    /// How machines' answers and writes to them are paced.
    pub machine: MachinePolicy,
    /// How long a request waits for a pooled connection to its machine.
    pub pool_queue_timeout: Duration,
    /// How a sleeping app is treated: wake rules, the operator's no-wake list and wake
    /// page (`wake.page_template`, read at start and at each reload).
    pub sleeping: asleep::Sleeping,
    pub replay: ReplayConfig,
    /// Whether each request gets an access-log line.
    pub access_log: bool,
}

impl ProxySettings {
    /// How a request admitted under these settings is paced toward its machine.
    fn pacing(&self) -> forward::Pacing {
        forward::Pacing {
            machine: self.machine,
            queue_timeout: self.pool_queue_timeout,
        }
    }
}

/// What to do with a machine's answer.
enum Answered {
    Client(Response<ProxyBody>),
    /// Boxed: replays are rare, and the request is large beside a response.
    Replay(Box<Request<MachineBody>>),
}

/// Where a request is going, which a replay moves.
struct Route<'a> {
    plan: &'a mut Plan,
    app: &'a mut Arc<App>,
}

/// The request on its way to a machine: as the client sent it (not yet kept for a
/// replay), sent again after a replay, or prepared and not reached (for another).
enum Outgoing {
    Fresh(Request<ClientBody>),
    Again(Request<MachineBody>),
    Prepared(Prepared),
}

impl Proxy {
    /// A proxy for `supervisor`'s machines, within `limits` (fixed for its life: they
    /// size the budget and the pools). `backhaul`: in a cluster, the key that signs
    /// requests sent over the backhaul and checks those received (fixed for the
    /// process: the cluster needs a restart). Spawns the pool's idle sweeper, so it is
    /// made inside the runtime.
    pub fn new(
        supervisor: Arc<Supervisor>,
        settings: ProxySettings,
        limits: UpstreamLimits,
        backhaul: Option<Arc<BackhaulKey>>,
    ) -> Proxy {
        Proxy {
            supervisor,
            replay_budget: replay::Budget::new(settings.replay.budget),
            settings: ArcSwap::from_pointee(settings),
            upstreams: Upstreams::new(limits, backhaul),
        }
    }

    /// Replaces the settings (a config reload); requests already placed keep theirs.
    pub fn set_settings(&self, settings: ProxySettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Serves one request; errors become responses: a short message and the request id
    /// for the client, the details for the log.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        if inbound.backhaul {
            // Boxed: a relayed request's future would make every request's larger.
            return Box::pin(self.relay(req, peer)).await;
        }
        let began = Instant::now();
        let metrics = &self.supervisor.metrics;
        let _counted = InFlightGauge::enter(&metrics.in_flight);
        let settings = self.settings.load_full();
        let request_id = request_id(&settings);
        let asked = settings.access_log.then(|| Asked {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
        });
        let mut served = Served::default();
        let outcome = self
            .serve(&settings, req, inbound, peer, &request_id, &mut served)
            .await;
        let response = respond::answer(outcome, peer, &request_id);
        report::finish(response, served, asked, &request_id, metrics, began)
    }

    async fn serve(
        &self,
        settings: &ProxySettings,
        req: Request<Incoming>,
        inbound: Inbound,
        peer: SocketAddr,
        request_id: &str,
        served: &mut Served,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if inbound.scheme == "http"
            && let Some(answer) = challenge::answer(&settings.challenges, &req)
        {
            return Ok(answer);
        }
        checks::refuse(&req)?;
        let target = Target::of(&req)?;
        let mut app = self.route(settings, &target.host)?;
        served.app = app.record.name.clone();
        let port = inbound.service_port;
        let port_rules = PortRules::of(&app, port);
        if inbound.scheme == "http" && port_rules.force_https {
            return Ok(respond::redirect_to_https(&target.host, req.uri()));
        }
        let chunked = checks::is_chunked(&req);
        let mut req = req.map(|body| PacedBody::new(body, settings.client_body));
        let client_ip = settings.trusted.client_ip(peer.ip(), req.headers());
        let location = settings.geo.locate(client_ip);
        let mut plan = place::plan(&settings.regions, location, req.headers());
        let rules = port_rules.http();
        let mut manner = settings.sleeping.manner(rules, &req);
        let head = req.method() == Method::HEAD;
        let fwd = forwarded(settings, &target, client_ip, inbound, peer);
        let pacing = settings.pacing();
        if chunked {
            // Read before any machine wakes: a broken upload never starts one.
            checks::first_chunk(req.body_mut()).await?;
        }
        let mut outgoing = Outgoing::Fresh(req);
        let mut replays = replay::Replays {
            limits: &settings.replay,
            kept: None,
            hops: 0,
        };
        let mut unreached = None;
        loop {
            let ready = match self.supervisor.ready_in(&app, port, &plan, manner).await {
                Ok(ready) => ready,
                Err(AcquireError::Asleep { waking, .. }) => {
                    let metrics = &self.supervisor.metrics;
                    let name = &app.record.name;
                    return Ok(settings.sleeping.answer(metrics, name, rules, waking, head));
                }
                // Nothing else can take it: the machine that could not be reached is
                // what the client should hear about.
                Err(e) => return Err(unreached.unwrap_or(ProxyError::from(e))),
            };
            served.add_wait(ready.waited);
            let prepared = self.prepare(outgoing, &fwd, pacing, &mut replays).await?;
            let machine = ready.machine.clone();
            let Unreached {
                machine: missed,
                error,
                again,
            } = match forward::send(&self.upstreams, prepared, ready, request_id).await {
                Ok(response) => {
                    let route = Route {
                        plan: &mut plan,
                        app: &mut app,
                    };
                    let max = settings.sleeping.wake.keep_awake_max;
                    let answered =
                        self.answered(response, &machine, served, &mut replays, route, max);
                    match answered? {
                        Answered::Client(response) => return Ok(response),
                        Answered::Replay(again) => outgoing = Outgoing::Again(*again),
                    }
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

    /// The machine answered: its keep-awake is taken out and applied; the answer goes to
    /// the client, unless it asks for a replay: then the request to send next, with the
    /// route moved where it points.
    fn answered(
        &self,
        mut response: Response<ProxyBody>,
        machine: &Arc<crate::machines::Machine>,
        served: &mut Served,
        replays: &mut replay::Replays<'_>,
        route: Route<'_>,
        max: std::time::Duration,
    ) -> Result<Answered, ProxyError> {
        served.machine = machine.id.clone();
        served.region = machine.region.clone();
        keep_awake::take(&self.supervisor, machine, response.headers_mut(), max);
        let Some(target) = replay::requested(&response) else {
            return Ok(Answered::Client(response));
        };
        let (registry, metrics) = (&self.supervisor.registry, &self.supervisor.metrics);
        let again = replays.next(target, machine, route.plan, route.app, registry, metrics)?;
        served.app = route.app.record.name.clone();
        Ok(Answered::Replay(Box::new(again)))
    }

    /// The request ready for its machine; the client's, the first time, kept for a
    /// replay on the way (after the wake, so the wake never waits for the body).
    async fn prepare(
        &self,
        outgoing: Outgoing,
        fwd: &Forwarded<'_>,
        pacing: forward::Pacing,
        replays: &mut replay::Replays<'_>,
    ) -> Result<Prepared, ProxyError> {
        Ok(match outgoing {
            Outgoing::Fresh(req) => {
                let (req, kept) = replay::keep(req, replays.limits, &self.replay_budget).await?;
                replays.kept = Some(kept);
                forward::prepare(req, fwd, pacing)
            }
            Outgoing::Again(req) => forward::prepare(req, fwd, pacing),
            Outgoing::Prepared(prepared) => prepared,
        })
    }

    /// Begins waking the app a TLS ClientHello names, if it asks to be woken so early.
    pub fn wake_early(&self, host: &str, port: u16, peer: SocketAddr) {
        let settings = self.settings.load();
        let Ok(app) = self.route(&settings, host) else {
            return;
        };
        if !settings
            .sleeping
            .wakes_early(PortRules::of(&app, port).http())
        {
            return;
        }
        let location = settings.geo.locate(peer.ip());
        let plan = place::plan(&settings.regions, location, &http::HeaderMap::new());
        self.supervisor.wake_early(&app, port, &plan);
    }

    fn route(&self, settings: &ProxySettings, host: &str) -> Result<Arc<App>, ProxyError> {
        let registry = &self.supervisor.registry;
        route::route(registry, &settings.hostnames, &settings.domains, host)
    }

    async fn ready(&self, app: &App, port: u16, plan: &Plan) -> Result<Ready, ProxyError> {
        Ok(self.supervisor.ready(app, port, plan).await?)
    }
}

/// A new request's id: unique, and naming the edge that received it.
fn request_id(settings: &ProxySettings) -> String {
    crate::ids::ulid_with(&settings.edge_region)
}

/// What the edge tells the machine about the client's connection (both paths).
fn forwarded<'a>(
    settings: &'a ProxySettings,
    target: &'a Target,
    client_ip: std::net::IpAddr,
    inbound: Inbound,
    peer: SocketAddr,
) -> Forwarded<'a> {
    Forwarded {
        client_ip,
        peer_ip: peer.ip(),
        host: &target.host,
        authority: &target.authority,
        scheme: inbound.scheme,
        public_port: inbound.service_port,
        edge_region: &settings.edge_region,
    }
}

/// What an app's machines say about requests on one of its ports, read in one pass
/// over them (one lock of the list, one read of each config, where there were three).
pub(super) struct PortRules {
    port: u16,
    /// The config of the first machine (not gone) serving the port: where the app's
    /// rules for requests on it are read (the machines of an app share them, as Fly's do).
    spec: Option<Arc<MachineSpec>>,
    /// Whether a machine's service on this (plain HTTP) port says `force_https`.
    pub force_https: bool,
    /// Whether a machine's service on this port speaks HTTP/2 to the edge (hyper's
    /// path serves it). Gone machines are not asked, for none of the three: a machine
    /// being destroyed is never picked.
    pub h2_backend: bool,
}

impl PortRules {
    pub fn of(app: &App, port: u16) -> PortRules {
        app.with_machines(|machines| {
            let mut rules = PortRules {
                port,
                spec: None,
                force_https: false,
                h2_backend: false,
            };
            for machine in machines.iter().filter(|m| !m.is_gone()) {
                let spec = machine.spec();
                let Some((_, service)) = spec.port_for(port) else {
                    continue;
                };
                rules.force_https |= service.force_https;
                rules.h2_backend |= service.http_options.h2_backend;
                rules.spec.get_or_insert(spec);
            }
            rules
        })
    }

    /// The app's HTTP rules for requests on the port.
    pub fn http(&self) -> Option<RulesView<'_>> {
        self.spec.as_deref().and_then(|s| s.http_rules(self.port))
    }
}
