//! The request path's one call into the lifecycle: a ready machine for this app, on
//! this port, along this plan. Picks, counts the request in flight, wakes the machine
//! if it sleeps (joining the wake in progress) and waits for its health checks to pass,
//! falls back to the next machine or region when a wake fails, and queues for a bounded
//! time when every machine is full (or failing its checks). A request may also be one
//! that must not wake a machine, or must not wait for one (its `Manner`).

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
use tokio::time::Instant;

/// How many times a request may find its machine stopped again right after a wake (an
/// operator stopped it meanwhile) before it gives up.
const MAX_WAKE_ATTEMPTS: usize = 4;

/// How often a queued request looks for room.
pub(super) const QUEUE_POLL: Duration = Duration::from_millis(5);

/// A machine chosen for a request, with the request counted in flight on it: started,
/// when hosted here; when another node hosts it (`machine.node`), that node wakes it if
/// needed, and the request goes there over the backhaul.
pub struct Ready {
    pub machine: Arc<Machine>,
    /// Where the machine listens for this service.
    pub internal_port: u16,
    /// The service speaks HTTP/2 without TLS (`h2_backend`).
    pub h2_backend: bool,
    /// `fly-prefer-instance-id` could not be honoured (the machine is told so).
    pub preferred_unavailable: bool,
    pub in_flight: InFlight,
    /// How long the request waited for the machine to wake (and pass its checks),
    /// when it had to.
    pub waited: Option<Duration>,
}

/// How a request treats a machine that sleeps, and the idle clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Manner {
    pub on_sleep: OnSleep,
    /// Its end does not restart the machine's idle clock (a monitor's request).
    pub quiet: bool,
}

/// What a request does when its machine sleeps (or is still starting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSleep {
    /// Wakes it and waits (API clients, the default).
    #[default]
    Wake,
    /// Begins the wake and does not wait: the proxy answers with the wake page.
    Begin,
    /// Leaves it asleep: the proxy answers for it (a no-wake rule).
    Leave,
}

pub(super) async fn ready(
    sup: &Arc<Supervisor>,
    app: &App,
    port: u16,
    plan: &Plan,
    manner: Manner,
) -> Result<Ready, AcquireError> {
    match ready_once(sup, app, port, plan, manner).await {
        // Boxed, as the wake below: each request's future would otherwise carry room for
        // the rare paths, copied whole at every await that builds it.
        Err(e) if waiting_helps(&e) => Box::pin(queue(sup, app, port, plan, manner)).await,
        other => other,
    }
}

/// Every machine that could serve is full, or failing its checks: room may come.
fn waiting_helps(error: &AcquireError) -> bool {
    matches!(
        error,
        AcquireError::AtHardLimit { .. } | AcquireError::Unhealthy { .. }
    )
}

/// Every machine that could serve is at its hard limit: wait for room, a bounded number
/// of requests per app for a bounded time, then give up (the proxy answers 503).
async fn queue(
    sup: &Arc<Supervisor>,
    app: &App,
    port: u16,
    plan: &Plan,
    manner: Manner,
) -> Result<Ready, AcquireError> {
    let max = sup.settings().max_queued;
    let Some(_place) = QueuePlace::take(sup, &app.record.name, max) else {
        sup.metrics.queue_rejected(&app.record.name);
        return Err(AcquireError::AtHardLimit {
            app: app.record.name.clone(),
        });
    };
    let deadline = Instant::now() + sup.settings().queue_timeout;
    loop {
        tokio::time::sleep(QUEUE_POLL).await;
        match ready_once(sup, app, port, plan, manner).await {
            Err(e) if waiting_helps(&e) && Instant::now() < deadline => continue,
            Err(e) if waiting_helps(&e) => {
                sup.metrics.queue_rejected(&app.record.name);
                return Err(e);
            }
            other => return other,
        }
    }
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
    manner: Manner,
) -> Result<Ready, AcquireError> {
    let mut failed: HashSet<String> = plan.avoid.iter().cloned().collect();
    let mut last_failure = None;
    for _ in 0..MAX_WAKE_ATTEMPTS {
        let picked = match pick::pick(app, port, plan, &failed, |m| sup.runs.is_waking(m)) {
            Ok(picked) => picked,
            Err(e) => return Err(last_failure.unwrap_or(e)),
        };
        let machine = picked.machine;
        if picked.action == Action::Wake && manner.on_sleep != OnSleep::Wake {
            return Err(leave_asleep(sup, app, &machine, manner.on_sleep));
        }
        let in_flight = match manner.quiet {
            true => machine.enter_quietly(),
            false => machine.enter(),
        };
        if over_hard_limit(&machine, port) {
            // Another request took the last place between the pick and now.
            return Err(AcquireError::AtHardLimit {
                app: app.record.name.clone(),
            });
        }
        let mut waited = None;
        // A machine another node hosts is woken there, by the request itself.
        if picked.action == Action::Wake && machine.is_local() {
            let began = Instant::now();
            match Box::pin(wake_healthy(sup, &machine)).await {
                Ok(()) => waited = Some(began.elapsed()),
                // Destroyed meanwhile: pick again among the others.
                Err(AcquireError::Wake {
                    error: WakeError::Gone,
                    ..
                }) => continue,
                Err(error) => {
                    failed.insert(machine.id.clone());
                    last_failure = Some(error);
                    continue;
                }
            }
        }
        if machine.state() == MachineState::Started || !machine.is_local() {
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
                waited,
            });
        }
    }
    Err(last_failure.unwrap_or(AcquireError::NoMachines {
        app: app.record.name.clone(),
        port,
    }))
}

/// Wakes the machine (or joins its wake), then waits for its checks to let it serve,
/// all within one wake timeout.
async fn wake_healthy(sup: &Arc<Supervisor>, machine: &Arc<Machine>) -> Result<(), AcquireError> {
    let began = Instant::now();
    wake::wake(sup, machine, EventSource::Edgewake)
        .await
        .map_err(|error| AcquireError::Wake {
            machine: machine.id.clone(),
            error,
        })?;
    let left = sup.settings().wake_timeout.saturating_sub(began.elapsed());
    crate::checks::until_routable(machine, left)
        .await
        .map_err(|error| AcquireError::NotHealthy {
            machine: machine.id.clone(),
            error,
        })
}

/// A request that must not wait for this sleeping machine: its wake begins if the
/// request asks (the page's), and the proxy answers for it.
fn leave_asleep(
    sup: &Arc<Supervisor>,
    app: &App,
    machine: &Arc<Machine>,
    on_sleep: OnSleep,
) -> AcquireError {
    let waking = on_sleep == OnSleep::Begin;
    if waking && machine.state() != MachineState::Started {
        wake::begin(sup, machine, EventSource::Edgewake, "request");
    }
    AcquireError::Asleep {
        app: app.record.name.clone(),
        waking,
    }
}

/// Begins the wake a request would begin, without a request (see `Supervisor::wake_early`).
pub(super) fn wake_early(sup: &Arc<Supervisor>, app: &App, port: u16, plan: &Plan) {
    let waking = |m: &Machine| sup.runs.is_waking(m);
    let Ok(picked) = pick::pick(app, port, plan, &HashSet::new(), waking) else {
        return;
    };
    let machine = picked.machine;
    let asleep = matches!(
        machine.state(),
        MachineState::Stopped | MachineState::Created
    );
    if picked.action == Action::Wake && asleep && !sup.runs.is_waking(&machine) {
        wake::begin(sup, &machine, EventSource::Edgewake, "early");
    }
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
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
    app: String,
}

impl<'a> QueuePlace<'a> {
    fn take(sup: &'a Supervisor, app: &str, max: usize) -> Option<QueuePlace<'a>> {
        let mut count = sup.queued.entry(app.to_string()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        sup.metrics.queued.inc();
        Some(QueuePlace {
            queued: &sup.queued,
            gauge: &sup.metrics.queued,
            app: app.to_string(),
        })
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Some(mut count) = self.queued.get_mut(&self.app) {
            *count = count.saturating_sub(1);
        }
    }
}
