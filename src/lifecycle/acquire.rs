//! The request path's one call into the lifecycle: a ready machine for this app, on
//! this port, along this plan. Picks, counts the request in flight, wakes the machine
//! if it sleeps (joining the wake in progress), falls back to the next machine or
//! region when a wake fails, and queues for a bounded time when every machine is full.

use super::error::{AcquireError, WakeError};
use super::pick::{self, Action, Plan};
use super::wake;
use super::{FALLBACK_INTERNAL_PORT, Supervisor};
use crate::machines::activity::InFlight;
use crate::machines::{App, EventSource, Machine, MachineState};
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How many times a request may find its machine stopped again right after a wake (an
/// operator stopped it meanwhile) before it gives up.
const MAX_WAKE_ATTEMPTS: usize = 4;

/// How often a queued request looks for room.
const QUEUE_POLL: Duration = Duration::from_millis(5);

/// A started machine chosen for a request, with the request counted in flight on it.
pub struct Ready {
    pub machine: Arc<Machine>,
    /// Where the machine listens for this service.
    pub internal_port: u16,
    /// The service speaks HTTP/2 without TLS (`h2_backend`).
    pub h2_backend: bool,
    /// `fly-prefer-instance-id` could not be honoured (the machine is told so).
    pub preferred_unavailable: bool,
    pub in_flight: InFlight,
}

pub(super) async fn ready(
    sup: &Arc<Supervisor>,
    app: &App,
    port: u16,
    plan: &Plan,
) -> Result<Ready, AcquireError> {
    match ready_once(sup, app, port, plan).await {
        Err(AcquireError::AtHardLimit { .. }) => queue(sup, app, port, plan).await,
        other => other,
    }
}

/// Every machine that could serve is at its hard limit: wait for room, a bounded number
/// of requests per app for a bounded time, then give up (the proxy answers 503).
async fn queue(
    sup: &Arc<Supervisor>,
    app: &App,
    port: u16,
    plan: &Plan,
) -> Result<Ready, AcquireError> {
    let full = || AcquireError::AtHardLimit {
        app: app.record.name.clone(),
    };
    let max = sup.settings().max_queued;
    let Some(_place) = QueuePlace::take(&sup.queued, &app.record.name, max) else {
        return Err(full());
    };
    let deadline = tokio::time::Instant::now() + sup.settings().queue_timeout;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(QUEUE_POLL).await;
        match ready_once(sup, app, port, plan).await {
            Err(AcquireError::AtHardLimit { .. }) => continue,
            other => return other,
        }
    }
    Err(full())
}

/// Picks and wakes. The request is counted in flight before it checks the state, which
/// keeps the reaper off it. A machine that fails to wake is set aside and the request
/// placed again, so a failure in the nearest region falls back to the next one; the
/// last failure is reported when nothing else can serve.
async fn ready_once(
    sup: &Arc<Supervisor>,
    app: &App,
    port: u16,
    plan: &Plan,
) -> Result<Ready, AcquireError> {
    let mut failed: HashSet<String> = plan.avoid.iter().cloned().collect();
    let mut last_failure = None;
    for _ in 0..MAX_WAKE_ATTEMPTS {
        let picked = match pick::pick(app, port, plan, &failed, |m| sup.runs.is_waking(m)) {
            Ok(picked) => picked,
            Err(e) => return Err(last_failure.unwrap_or(e)),
        };
        let machine = picked.machine;
        let in_flight = machine.enter();
        if over_hard_limit(&machine, port) {
            // Another request took the last place between the pick and now.
            return Err(AcquireError::AtHardLimit {
                app: app.record.name.clone(),
            });
        }
        if picked.action == Action::Wake {
            match wake::wake(sup, &machine, EventSource::Edgewake).await {
                Ok(()) => {}
                // Destroyed meanwhile: pick again among the others.
                Err(WakeError::Gone) => continue,
                Err(error) => {
                    failed.insert(machine.id.clone());
                    last_failure = Some(AcquireError::Wake {
                        machine: machine.id.clone(),
                        error,
                    });
                    continue;
                }
            }
        }
        if machine.state() == MachineState::Started {
            let spec = machine.spec();
            let (internal_port, h2_backend) = spec
                .port_for(port)
                .map_or((FALLBACK_INTERNAL_PORT, false), |(s, p)| {
                    (s.internal_port, p.http_options.h2_backend)
                });
            return Ok(Ready {
                machine,
                internal_port,
                h2_backend,
                preferred_unavailable: picked.preferred_unavailable,
                in_flight,
            });
        }
    }
    Err(last_failure.unwrap_or(AcquireError::NoMachines {
        app: app.record.name.clone(),
        port,
    }))
}

/// Whether the machine now has more requests in flight than its hard limit allows.
fn over_hard_limit(machine: &Machine, port: u16) -> bool {
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
