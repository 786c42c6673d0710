//! Phase 1 on the fast path: whether a parsed request is the fast path's, and if so
//! the phases that need no waiting, as on hyper's path: route, place, the headers for
//! the machine.

use super::super::{
    Inbound, PortRules, Proxy, ProxySettings, challenge, forwarded, headers, place, route,
};
use super::head::{self, RequestHead};
use crate::lifecycle::{Manner, Plan};
use crate::machines::App;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request the fast path serves: its app, plan and manner toward a sleeping app.
pub(super) struct Routed {
    pub app: Arc<App>,
    pub plan: Plan,
    pub manner: Manner,
}

/// The phases that need no waiting, as on hyper's path: route, place, the head for
/// the machine (written into `out` but for its last fields: `head::write_request_head`).
/// `None`: hyper's path serves it (an ACME token, an unknown host, the
/// redirect to https, an `h2_backend` service, a body, a request relayed over the
/// backhaul, or access logging on, whose lines hyper's path writes).
pub(super) fn admit(
    proxy: &Proxy,
    settings: &ProxySettings,
    head: &mut RequestHead,
    inbound: Inbound,
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> Option<Routed> {
    let req = &mut head.req;
    if head.body > 0 || settings.access_log || inbound.backhaul {
        return None;
    }
    if inbound.scheme == "http" && challenge::answer(&settings.challenges, req).is_some() {
        return None;
    }
    let target = route::Target::of(req).ok()?;
    let app = proxy.route(settings, &target.host).ok()?;
    let port = inbound.service_port;
    let port_rules = PortRules::of(&app, port);
    if (inbound.scheme == "http" && port_rules.force_https) || port_rules.h2_backend {
        return None;
    }
    let client_ip = settings.trusted.client_ip(peer.ip(), req.headers());
    let location = settings.geo.locate(client_ip);
    let plan = place::plan(&settings.regions, location, req.headers());
    let manner = settings.sleeping.manner(port_rules.http(), req);
    let fwd = forwarded(settings, &target, client_ip, inbound, peer);
    headers::strip_hop_by_hop(req.headers_mut());
    head::write_request_head(out, req, &fwd);
    Some(Routed { app, plan, manner })
}
