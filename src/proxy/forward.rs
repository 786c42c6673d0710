//! Forward: the request goes to the machine over the client connection's own upstream
//! (HTTP/1.1), a connection of its own (an upgrade), a connection the fast path lends
//! (an HTTP/2 stream without a body, under a slot of the pool) or the bounded pool
//! (HTTP/2 streams with a body, h2c when the port says `h2_backend`), bodies streamed
//! both ways and paced (`MachinePolicy`); an in-flight
//! guard rides along until the response body is done, so a machine is never idle while
//! it is still answering. An upgrade (WebSocket) the machine accepts becomes a tunnel.
//!
//! A machine another node hosts is reached through that node's backhaul instead
//! (`to_node`): the same request, headers already written for the machine, signed.

use super::h1::{Destination, lent};
use super::headers::{self, Forwarded};
use super::pool::{Lease, Pools, Queueing};
use super::to_node::{self, Backhaul, Target};
use super::tunnel::{self, Carried};
use super::upstream::{self, Budget, ConnectionUpstream, MachineBody, SendFailure, UpstreamError};
use super::{ConnectionPermit, ProxyBody};
use crate::cluster::{BackhaulKey, backhaul};
use crate::connection::{BoxError, Guarded, MachinePolicy, PacedBody, UpstreamLimits};
use crate::lifecycle::Ready;
use http::header::{CONNECTION, HOST, HeaderValue, UPGRADE};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// Everything that reaches machines: the budget of connections and the pools; and
/// other nodes' backhauls, with the key that signs for them.
pub struct Upstreams {
    pub budget: Budget,
    /// The fast path's idle machine connections, between client connections.
    pub parked: super::h1::Parked,
    pools: Pools,
    backhaul: Backhaul,
    pub(super) key: Option<Arc<BackhaulKey>>,
}

impl Upstreams {
    pub fn new(limits: UpstreamLimits, key: Option<Arc<BackhaulKey>>) -> Upstreams {
        let budget = Budget::new(limits.max_connections);
        Upstreams {
            // Bounded as the pool's idle connections are: the lent ones come from its slots.
            parked: super::h1::Parked::start(
                limits.workers + 1,
                limits
                    .max_per_machine
                    .max(super::h1::MIN_PARKED_PER_MACHINE),
            ),
            pools: Pools::new(budget.clone(), limits),
            budget,
            backhaul: Backhaul::new(),
            key,
        }
    }
}

/// How a request's exchange with its machine is paced: the settings in force when it
/// was admitted (a reload applies to requests admitted after it).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub machine: MachinePolicy,
    /// How long it waits for a pooled connection to its machine.
    pub queue_timeout: Duration,
}

impl Pacing {
    fn queueing(&self) -> Queueing {
        Queueing {
            timeout: self.queue_timeout,
            send: self.machine.send,
        }
    }
}

/// A request made ready for machines: headers rewritten for them, and what the client
/// connection carried along taken out.
pub struct Prepared {
    req: Request<MachineBody>,
    /// The authority the request was routed by (an h2c machine gets it as `:authority`).
    authority: HeaderValue,
    upgrade: Option<HeaderValue>,
    client_upgrade: Option<OnUpgrade>,
    permit: Option<ConnectionPermit>,
    own_upstream: Option<Arc<ConnectionUpstream>>,
    pacing: Pacing,
    /// The public port the client came in on (named to the node a backhaul reaches).
    pub(super) public_port: u16,
}

/// The machine's answer as it comes: from hyper's client, or off a lent connection.
type Answer = Response<Either<Incoming, lent::LentBody>>;

/// A machine could not be reached; `again` is the request, when it may go to another.
pub struct Unreached {
    pub machine: String,
    pub error: UpstreamError,
    pub again: Option<Prepared>,
}

pub fn prepare(req: Request<MachineBody>, fwd: &Forwarded<'_>, pacing: Pacing) -> Prepared {
    let parts = (fwd.authority.clone(), fwd.public_port, pacing);
    take_connection_parts(req, parts, |headers| headers::to_machine(headers, fwd))
}

/// A request another edge relayed over the backhaul: its headers were written for the
/// machine there (client address, that edge's region), so only what the backhaul
/// added and what described the hop between the nodes is taken off.
pub fn prepare_relayed(req: Request<MachineBody>, public_port: u16, pacing: Pacing) -> Prepared {
    let authority = req
        .headers()
        .get(HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let parts = (authority, public_port, pacing);
    take_connection_parts(req, parts, |headers| {
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
    (authority, public_port, pacing): (HeaderValue, u16, Pacing),
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
        authority,
        req,
        upgrade,
        client_upgrade,
        permit,
        own_upstream,
        pacing,
        public_port,
    }
}

pub async fn send(
    upstreams: &Upstreams,
    mut prepared: Prepared,
    ready: Ready,
    request_id: &str,
) -> Result<Response<ProxyBody>, Unreached> {
    let target = match to_node::target(&ready) {
        Ok(target) => target,
        Err(error) => {
            return Err(Unreached {
                machine: ready.machine.id.clone(),
                error,
                again: Some(prepared),
            });
        }
    };
    if let Target::Backhaul(addr) = target {
        to_node::address(
            &mut prepared.req,
            addr,
            upstreams.key.as_deref(),
            &ready,
            prepared.public_port,
            request_id,
        );
    }
    // Said for this attempt only: a retry goes to another machine.
    let fields = prepared.req.headers_mut();
    fields.remove(headers::FLY_PREFERRED_INSTANCE_UNAVAILABLE);
    if ready.preferred_unavailable {
        fields.insert(
            headers::FLY_PREFERRED_INSTANCE_UNAVAILABLE,
            HeaderValue::from_static("true"),
        );
    }
    let (response, lease) = match answered(upstreams, &mut prepared, &ready, target).await {
        Ok(answer) => answer,
        Err(failure) => {
            let again = failure.unsent.map(|req| Prepared { req, ..prepared });
            return Err(Unreached {
                machine: ready.machine.id.clone(),
                error: failure.error,
                again,
            });
        }
    };
    Ok(answer(response, lease, prepared, ready, request_id))
}

/// The machine's answer (its head), waited for within the read timeout counted from
/// when the client last sent part of its body: a slow upload is the client's pace to
/// keep, not the machine's.
async fn answered(
    upstreams: &Upstreams,
    prepared: &mut Prepared,
    ready: &Ready,
    target: Target,
) -> Result<(Answer, Option<Lease>), SendFailure> {
    let read = prepared.pacing.machine.read.timeout;
    let progress = match prepared.req.body() {
        Either::Left(body) => body.progress(),
        Either::Right(_) => None,
    };
    let mut exchange = pin!(exchange(upstreams, prepared, ready, target));
    let mut deadline = tokio::time::Instant::now() + read;
    loop {
        tokio::select! {
            result = &mut exchange => return result,
            () = tokio::time::sleep_until(deadline) => {
                match progress.as_ref().map(|p| p.last() + read).filter(|d| *d > deadline) {
                    Some(later) => deadline = later,
                    None => return Err(SendFailure {
                        error: UpstreamError::Timeout(format!("no answer within {read:?}")),
                        unsent: None,
                    }),
                }
            }
        }
    }
}

/// Sends the request over the connection's own upstream, a lent connection (no body)
/// or the pool. The request is taken out of `prepared`, and given back in the failure
/// when unsent. The rarer ways (another node, an h2c machine, an upgrade) are boxed,
/// so the common ones' future is not sized for them.
async fn exchange(
    upstreams: &Upstreams,
    prepared: &mut Prepared,
    ready: &Ready,
    target: Target,
) -> Result<(Answer, Option<Lease>), SendFailure> {
    let mut req = std::mem::replace(
        &mut prepared.req,
        Request::new(Either::Right(Full::default())),
    );
    if target != Target::Machine {
        let upgrade = prepared.upgrade.is_some();
        let response = Box::pin(upstreams.backhaul.send(req, upgrade)).await?;
        return Ok((response.map(Either::Left), None));
    }
    let addr = SocketAddr::from((ready.machine.private_ip, ready.internal_port));
    if ready.h2_backend {
        *req.uri_mut() = upstream::http_uri(req.uri(), prepared.authority.as_bytes());
        *req.version_mut() = Version::HTTP_2;
        req.headers_mut().remove(HOST); // `:authority` says it
        let (response, lease) = Box::pin(upstreams.pools.send_h2(
            addr,
            req,
            prepared.pacing.queueing(),
        ))
        .await?;
        return Ok((response.map(Either::Left), Some(lease)));
    }
    *req.uri_mut() = origin_form(req.uri());
    *req.version_mut() = Version::HTTP_11;
    let (budget, send) = (&upstreams.budget, prepared.pacing.machine.send);
    if prepared.upgrade.is_some() {
        // A connection of its own, which the tunnel keeps: it counts against the
        // budget, never against a machine's pool (a WebSocket is not a pooled request).
        let response = Box::pin(upstream::send_once(addr, req, budget, send)).await?;
        return Ok((response.map(Either::Left), None));
    }
    match prepared.own_upstream.as_ref() {
        Some(own) => Ok((
            own.send(addr, req, budget, send).await?.map(Either::Left),
            None,
        )),
        None if lent::may_borrow(&req) => {
            let lease = match upstreams
                .pools
                .lend_slot(addr, prepared.pacing.queue_timeout)
                .await
            {
                Ok(lease) => lease,
                Err(error) => return Err(SendFailure::unsent(error, req)),
            };
            let to = Destination {
                addr,
                budget,
                parked: &upstreams.parked,
                policy: prepared.pacing.machine,
            };
            let response = lent::send(&to, req).await?;
            Ok((response.map(Either::Right), Some(lease)))
        }
        None => {
            let (response, lease) = upstreams
                .pools
                .send_http1(addr, req, prepared.pacing.queueing())
                .await?;
            Ok((response.map(Either::Left), Some(lease)))
        }
    }
}

/// The machine's answer on its way to the client: a 101 becomes a tunnel; otherwise
/// the edge's headers are added, the body is paced, and the in-flight guard and the
/// pool lease ride on it.
fn answer(
    mut response: Answer,
    lease: Option<Lease>,
    prepared: Prepared,
    ready: Ready,
    request_id: &str,
) -> Response<ProxyBody> {
    if let (Some(protocol), Some(client_upgrade)) = (&prepared.upgrade, prepared.client_upgrade)
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let held = (prepared.permit, lease);
        return switch_protocols(response, client_upgrade, protocol, ready, request_id, held);
    }
    let machine = &ready.machine;
    headers::to_client(
        response.headers_mut(),
        &machine.id,
        &machine.region,
        request_id,
    );
    let (parts, body) = response.into_parts();
    let paced = PacedBody::new(body, prepared.pacing.machine.read);
    let body = Guarded::new(paced, (ready.in_flight, lease))
        .map_err(BoxError::from)
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
/// `held` (the client connection's slot, the pool's lease) lasts as long as the tunnel.
fn switch_protocols<H: Send + 'static>(
    mut response: Answer,
    client_upgrade: OnUpgrade,
    protocol: &HeaderValue,
    ready: Ready,
    request_id: &str,
    held: H,
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
        let _held = held; // the tunnel still counts against the connection limits
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
