//! On-demand issuance, guarded (Caddy's `ask` lesson: ordering for any name a client
//! sends is a denial-of-service vector). A ClientHello for a name no certificate covers
//! starts an order only if the name belongs to an app (`<app>.<domain>` or a hostname
//! added to it) and the rate limits allow, overall and per app; the handshake waits for
//! the order up to `ON_DEMAND_WAIT`. Names of no app never start an order.

use super::Acme;
use crate::hostnames::Hostnames;
use crate::machines::Registry;
use crate::tls::OnDemand;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a handshake waits for an on-demand certificate.
pub const ON_DEMAND_WAIT: Duration = Duration::from_secs(15);
/// On-demand orders started per minute, all apps together.
pub const ON_DEMAND_ORDERS_PER_MINUTE: usize = 20;
/// On-demand orders started per minute for one app.
pub const ON_DEMAND_ORDERS_PER_APP_PER_MINUTE: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// Order starts in the last minute, by app.
#[derive(Debug)]
pub struct Limiter {
    started: VecDeque<(Instant, String)>,
    overall: usize,
    per_app: usize,
}

impl Limiter {
    pub fn new(overall: usize, per_app: usize) -> Limiter {
        Limiter {
            started: VecDeque::new(),
            overall,
            per_app,
        }
    }

    /// Whether `app` may start an order at `now`; a yes counts as one started.
    pub fn allow(&mut self, app: &str, now: Instant) -> bool {
        while self
            .started
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW)
        {
            self.started.pop_front();
        }
        let of_app = self.started.iter().filter(|(_, a)| a == app).count();
        let allowed = self.started.len() < self.overall && of_app < self.per_app;
        if allowed {
            self.started.push_back((now, app.to_string()));
        }
        allowed
    }
}

/// The TLS listener's on-demand hook.
pub struct OnDemandIssuer {
    acme: Arc<Acme>,
    registry: Arc<Registry>,
    hostnames: Arc<Hostnames>,
    domains: Vec<String>,
    limiter: Mutex<Limiter>,
}

impl OnDemandIssuer {
    pub fn new(
        acme: Arc<Acme>,
        registry: Arc<Registry>,
        hostnames: Arc<Hostnames>,
        domains: Vec<String>,
    ) -> OnDemandIssuer {
        OnDemandIssuer {
            acme,
            registry,
            hostnames,
            domains,
            limiter: Mutex::new(Limiter::new(
                ON_DEMAND_ORDERS_PER_MINUTE,
                ON_DEMAND_ORDERS_PER_APP_PER_MINUTE,
            )),
        }
    }

    /// The app `host` belongs to, if it is a name a public CA could issue for.
    fn owner(&self, host: &str) -> Option<String> {
        crate::hostnames::parse(host, &[]).ok()?;
        if host == "localhost" || host.ends_with(".localhost") || host.starts_with("*.") {
            return None;
        }
        let app = crate::proxy::route::route(&self.registry, &self.hostnames, &self.domains, host);
        app.ok().map(|app| app.record.name.clone())
    }

    /// Starts tracking `host` for `app` if the limits allow.
    fn start(&self, host: &str, app: &str) -> bool {
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(app, Instant::now());
        if !allowed {
            tracing::warn!(%host, %app, "on-demand certificate refused: too many orders this minute");
            return false;
        }
        match self.hostnames.claim(host, app, true) {
            Ok(_) => {
                self.acme.track(host);
                true
            }
            Err(e) => {
                tracing::warn!(%host, %app, "on-demand certificate refused: {e}");
                false
            }
        }
    }
}

#[async_trait::async_trait]
impl OnDemand for OnDemandIssuer {
    async fn obtain(&self, host: &str) {
        let Some(app) = self.owner(host) else {
            return tracing::debug!(%host, "no on-demand certificate: the name is no app's");
        };
        if self.acme.watch(host).is_none() && !self.start(host, &app) {
            return;
        }
        let Some(mut status) = self.acme.watch(host) else {
            return;
        };
        let settled = status.wait_for(|s| s.settled());
        if tokio::time::timeout(ON_DEMAND_WAIT, settled).await.is_err() {
            tracing::debug!(%host, "on-demand certificate not ready in {ON_DEMAND_WAIT:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most N starts a minute overall and M per app; a minute later there is room
    /// again.
    #[test]
    fn limits_overall_and_per_app() {
        let mut limiter = Limiter::new(3, 2);
        let t0 = Instant::now();
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0));
        assert!(!limiter.allow("a", t0), "per app");
        assert!(limiter.allow("b", t0));
        assert!(!limiter.allow("c", t0), "overall");
        let later = t0 + WINDOW;
        assert!(limiter.allow("a", later) && limiter.allow("c", later));
    }
}
