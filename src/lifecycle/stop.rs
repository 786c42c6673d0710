//! Stopping and destroying machines, idle stops and shutdown. Each stop runs in a task
//! of its own, so a caller that goes away (an API client hanging up) cannot cut it
//! short halfway, leaving a machine `stopping` with its process alive.

use super::run::Running;
use super::start::describe_exit;
use super::{SHUTDOWN_REASON, Supervisor};
use crate::config::MAX_STOP_TIMEOUT;
use crate::drivers::{Exit, Instance};
use crate::machines::tunnels::TUNNEL_CLOSE_GRACE;
use crate::machines::{App, EventSource, Machine, MachineEvent, MachineState};
use crate::observe;
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Marks the exit events of machines the reaper stopped for being idle.
pub const IDLE_REASON: &str = "idle";

/// How long a machine killed at its stop timeout may take to be gone before its stop
/// gives up on it (a process stuck in the kernel cannot hold a stop for ever).
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// The longest edgewake's shutdown waits for its machines: every machine is stopped at
/// once, each within the longest stop timeout and its grace. A stop first waits for a
/// change in progress on its machine (a start, an API stop); whatever is still going at
/// the bound is left to the next start's recovery, as after a crash.
pub const SHUTDOWN_BOUND: Duration = MAX_STOP_TIMEOUT.saturating_add(KILL_GRACE);

/// How a stop was asked for: who asked, the event it is recorded as, and overrides of
/// the machine's stop signal and timeout.
#[derive(Debug, Clone, Copy)]
pub struct StopRequest {
    pub source: EventSource,
    /// The kind of the first event: `stop`, `suspend`, `restart`, `update`.
    pub kind: &'static str,
    pub signal: Option<Signal>,
    pub timeout: Option<Duration>,
    /// Said in the first event (`request.message`), e.g. why a suspend stopped instead.
    pub note: Option<&'static str>,
    /// Said in the exit event (`request.reason`).
    pub reason: Option<&'static str>,
}

impl StopRequest {
    /// A plain stop with the machine's own signal and timeout.
    pub fn new(source: EventSource) -> StopRequest {
        StopRequest {
            source,
            kind: "stop",
            signal: None,
            timeout: None,
            note: None,
            reason: None,
        }
    }
}

pub(super) async fn stop(sup: &Arc<Supervisor>, machine: &Arc<Machine>, request: StopRequest) {
    let (this, machine) = (sup.clone(), machine.clone());
    let stop = sup.spawn(async move {
        let run = this.runs.of(&machine);
        let mut running = run.lock.lock().await;
        stop_locked(&this, &machine, &mut running, request).await;
    });
    let _ = stop.await;
}

/// Stops the machine if it runs, marks it destroyed and forgets it, under one
/// lifecycle lock: no request can wake it in between, and the proxy skips it from the
/// moment it is `destroying`.
pub(super) async fn destroy(sup: &Arc<Supervisor>, machine: &Arc<Machine>, source: EventSource) {
    let (this, machine) = (sup.clone(), machine.clone());
    let destroy = sup.spawn(async move {
        let run = this.runs.of(&machine);
        let mut running = run.lock.lock().await;
        this.registry
            .transition(&machine, MachineState::Destroying, None);
        if let Some(instance) = running.instance.take() {
            let exit = halt(&this, &machine, &instance, StopRequest::new(source)).await;
            observe::lifecycle::stopped(&this.metrics, &machine, "destroy", &describe_exit(exit));
            let event = MachineEvent::exit(exit, true);
            this.registry
                .transition(&machine, MachineState::Destroying, Some(event));
        }
        let event = MachineEvent::new("destroy", MachineState::Destroyed, source);
        this.registry
            .transition(&machine, MachineState::Destroyed, Some(event));
        this.driver.forget(&machine.id).await;
        if let Err(e) = this.registry.remove_machine(&machine) {
            tracing::error!(machine = %machine.id, "cannot forget destroyed machine: {e}");
        }
        this.runs.forget(&machine);
    });
    let _ = destroy.await;
}

pub(super) async fn destroy_app(sup: &Arc<Supervisor>, app: Arc<App>) {
    let this = sup.clone();
    let destroy = sup.spawn(async move {
        // Machines other nodes host are theirs to destroy (they see the app go too).
        for machine in app.machines().iter().filter(|m| m.is_local()) {
            destroy(&this, machine, EventSource::User).await;
        }
        if let Err(e) = this.registry.forget_app(&app) {
            tracing::error!(app = %app.record.name, "cannot forget deleted app: {e}");
        }
    });
    let _ = destroy.await;
}

/// Closes the machine's tunnels, signals it to stop (the request's signal, else its
/// `stop_config.signal`, else the operator's), kills it after the stop timeout (chosen
/// the same way), and forgets its pid.
async fn halt(
    sup: &Supervisor,
    machine: &Machine,
    instance: &Instance,
    request: StopRequest,
) -> Exit {
    machine.tunnels.close_all(TUNNEL_CLOSE_GRACE).await;
    let spec = machine.spec();
    let signal = request
        .signal
        .or(spec.stop_signal())
        .unwrap_or(sup.settings().stop_signal);
    let timeout = request
        .timeout
        .or(spec.stop_config.timeout)
        .unwrap_or(sup.settings().stop_timeout)
        .min(MAX_STOP_TIMEOUT); // a config stored before the API checked it
    let exit = bounded_stop(sup, machine, instance, signal, timeout).await;
    sup.registry.set_pid(machine, None);
    exit
}

/// Signals the instance and kills it after `timeout`, giving up on it `KILL_GRACE`
/// after the kill (its exit then unknown): a process stuck in the kernel holds neither
/// a stop nor a failed start, nor the lifecycle lock they hold, for ever.
pub(super) async fn bounded_stop(
    sup: &Supervisor,
    machine: &Machine,
    instance: &Instance,
    signal: Signal,
    timeout: Duration,
) -> Exit {
    let stopped = tokio::time::timeout(
        timeout + KILL_GRACE,
        sup.driver.stop(instance, signal, timeout),
    );
    stopped.await.unwrap_or_else(|_| {
        tracing::error!(
            machine = %machine.id,
            "still not gone {KILL_GRACE:?} after SIGKILL; giving up on it"
        );
        Exit::UNKNOWN
    })
}

/// Stops the running instance, if any; the caller holds the lifecycle lock.
pub(super) async fn stop_locked(
    sup: &Supervisor,
    machine: &Machine,
    running: &mut Running,
    request: StopRequest,
) {
    let Some(instance) = running.instance.take() else {
        return;
    };
    let mut event = MachineEvent::new(request.kind, MachineState::Stopping, request.source);
    if let Some(note) = request.note {
        event.request = Some(serde_json::json!({ "message": note }));
    }
    sup.registry
        .transition(machine, MachineState::Stopping, Some(event));
    let exit = halt(sup, machine, &instance, request).await;
    observe::lifecycle::stopped(
        &sup.metrics,
        machine,
        stop_reason(&request),
        &describe_exit(exit),
    );
    let mut event = MachineEvent::exit(exit, true);
    if let (Some(reason), Some(request)) = (request.reason, event.request.as_mut()) {
        request["reason"] = reason.into();
    }
    sup.registry
        .transition(machine, MachineState::Stopped, Some(event));
}

/// Stops a machine only if it is still idle once no request can slip in (see
/// `claim_idle`).
pub(super) async fn stop_if_idle(
    sup: &Supervisor,
    machine: &Machine,
    idle_timeout: Duration,
) -> bool {
    let run = sup.runs.of(machine);
    let Ok(mut running) = run.lock.try_lock() else {
        return false;
    };
    if running.instance.is_none() || !claim_idle(machine, idle_timeout) {
        return false;
    }
    let mut request = StopRequest::new(EventSource::Edgewake);
    request.reason = Some(IDLE_REASON);
    stop_locked(sup, machine, &mut running, request).await;
    true
}

/// Claims a started machine for an idle stop, so that no request is sent to it from now
/// on: the state goes to `stopping` first, then the in-flight count is read, and the
/// mark is undone if a request is in. A request counts itself in first, then reads the
/// state, so one of the two always sees the other. The caller holds the lifecycle lock.
pub(super) fn claim_idle(machine: &Machine, idle_timeout: Duration) -> bool {
    if machine.state() != MachineState::Started {
        return false;
    }
    machine.set_state(MachineState::Stopping);
    if machine.activity.idle_for() < idle_timeout {
        machine.set_state(MachineState::Started);
        return false;
    }
    true
}

/// Why a stop happened, as the log and the metrics say it.
fn stop_reason(request: &StopRequest) -> &'static str {
    match (request.reason, request.source, request.kind) {
        (Some(SHUTDOWN_REASON), _, _) => "shutdown",
        (Some(IDLE_REASON), _, _) => "idle",
        (_, _, "restart") => "restart",
        (_, _, "update") => "update",
        (_, EventSource::User, _) => "api",
        (_, EventSource::Edgewake, _) => "edgewake",
    }
}

/// Asks every open tunnel (WebSockets, TCP after TLS) to close, at the start of a
/// shutdown, so draining connections does not wait on them.
pub(super) async fn close_all_tunnels(sup: &Supervisor) {
    let machines = sup.registry.all_machines();
    let closes = machines
        .iter()
        .map(|m| m.tunnels.close_all(TUNNEL_CLOSE_GRACE));
    futures_util::future::join_all(closes).await;
}

pub(super) async fn shutdown(sup: &Arc<Supervisor>) {
    sup.shutting_down.store(true, Ordering::SeqCst);
    if tokio::time::timeout(SHUTDOWN_BOUND, stop_all(sup))
        .await
        .is_err()
    {
        tracing::error!(
            "machines still stopping after {SHUTDOWN_BOUND:?}; leaving them (the next start reaps them)"
        );
    }
}

/// Stops every machine at once and waits for the lifecycle's tasks.
async fn stop_all(sup: &Arc<Supervisor>) {
    let mut stops = tokio::task::JoinSet::new();
    for machine in sup.registry.local_machines() {
        let this = sup.clone();
        stops.spawn(async move {
            let run = this.runs.of(&machine);
            let mut running = run.lock.lock().await;
            let mut request = StopRequest::new(EventSource::Edgewake);
            request.reason = Some(SHUTDOWN_REASON);
            stop_locked(&this, &machine, &mut running, request).await;
        });
    }
    while stops.join_next().await.is_some() {}
    sup.tasks.close();
    sup.tasks.wait().await;
}
