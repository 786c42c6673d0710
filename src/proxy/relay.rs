//! The host's side of the backhaul: a request another edge of the cluster placed on a
//! machine hosted here. Its signature is checked first (a request without one never
//! reaches a machine); then the machine is woken if it sleeps (joining the wake in
//! progress, as a local request would), counted in flight here, so idle stop sees it,
//! and sent the request as the other edge wrote it. The machine's keep-awake is kept
//! here; a fly-replay goes back to the edge that took the request, which replays it.

use super::respond::{ProxyError, error_response};
use super::{Proxy, ProxyBody, forward};
use crate::cluster::{BackhaulError, Relayed};
use crate::connection::PacedBody;
use crate::lifecycle::{Pinned, Plan};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use std::net::SocketAddr;

impl Proxy {
    /// Serves one request from the backhaul listener; errors become responses.
    pub(super) async fn relay(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let key = self.upstreams.key.as_ref();
        let verified = key.map_or(Err(BackhaulError::Missing), |key| key.verify(req.headers()));
        let relayed = match verified {
            Ok(relayed) => relayed,
            Err(error) => {
                tracing::warn!(%peer, "backhaul request refused: {error}");
                return error_response(&ProxyError::Backhaul(error), "");
            }
        };
        let request_id = relayed.request_id.clone();
        let served = self.serve_relayed(req, relayed).await;
        super::respond::answer(served, peer, &request_id)
    }

    async fn serve_relayed(
        &self,
        req: Request<Incoming>,
        relayed: Relayed,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let registry = &self.supervisor.registry;
        let app = registry
            .app(&relayed.app)
            .ok_or_else(|| ProxyError::UnknownHost(relayed.app.clone()))?;
        let hosted_here = registry
            .machine(&relayed.app, &relayed.machine)
            .is_some_and(|m| m.is_local());
        if !hosted_here {
            return Err(ProxyError::NotHostedHere(relayed.machine));
        }
        let plan = Plan {
            regions: std::sync::Arc::from([]),
            others_allowed: true,
            pinned: Pinned::Force(relayed.machine.clone()),
            avoid: Vec::new(),
        };
        let ready = self.ready(&app, relayed.port, &plan).await?;
        let machine = ready.machine.clone();
        let (pacing, client_body) = {
            let settings = self.settings.load();
            (settings.pacing(), settings.client_body)
        };
        let req = req.map(|body| Either::Left(PacedBody::new(body, client_body)));
        let prepared = forward::prepare_relayed(req, relayed.port, pacing);
        let mut response = forward::send(&self.upstreams, prepared, ready, &relayed.request_id)
            .await
            .map_err(|unreached| ProxyError::Upstream {
                machine: unreached.machine,
                error: unreached.error,
            })?;
        // A keep-awake asked by the machine is kept where its idle stop is decided: here.
        let max = self.settings.load().sleeping.wake.keep_awake_max;
        super::keep_awake::take(&self.supervisor, &machine, response.headers_mut(), max);
        Ok(response)
    }
}
