//! Waking a machine: every request that finds it stopped joins one shared start
//! (single-flight), which goes on even if the request that began it goes away; while
//! starts are held off after failed ones, a request fails at once instead.

use super::error::WakeError;
use super::run::WakeAttempt;
use super::{Supervisor, start};
use crate::drivers::DriverError;
use crate::machines::{EventSource, Machine};
use crate::observe;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a machine is woken, as the log and the metrics say it.
pub(super) fn reason_of(source: EventSource) -> &'static str {
    match source {
        EventSource::User => "api",
        EventSource::Edgewake => "request",
    }
}

/// Starts the machine unless it is started, sharing one start among all callers.
pub(super) async fn wake(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
) -> Result<(), WakeError> {
    wake_for(sup, machine, source, reason_of(source)).await
}

/// `wake`, saying why (`request`, `api`, `restart`, `early`).
pub(super) async fn wake_for(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
    reason: &'static str,
) -> Result<(), WakeError> {
    let mut attempt = join_or_begin(sup, machine, source, reason);
    let outcome = attempt.wait_for(Option::is_some).await;
    match outcome {
        Ok(result) => result.clone().unwrap_or(Err(WakeError::ShuttingDown)),
        Err(_) => Err(WakeError::ShuttingDown),
    }
}

/// Begins a wake without waiting for it. Registered before returning, so a later stop
/// waits for it.
pub(super) fn begin(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
    reason: &'static str,
) {
    let _ = join_or_begin(sup, machine, source, reason);
}

fn join_or_begin(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
    reason: &'static str,
) -> WakeAttempt {
    let run = sup.runs.of(machine);
    let mut slot = run.wake_slot();
    if let Some(attempt) = slot.as_ref() {
        return attempt.clone();
    }
    // A request does not spawn a machine that keeps failing to start; the API may.
    let backing_off = run.backoff().remaining();
    if let Some(left) = backing_off.filter(|_| source != EventSource::User) {
        return watch::channel(Some(Err(WakeError::BackingOff(left)))).1;
    }
    let (tx, rx) = watch::channel(None);
    *slot = Some(rx.clone());
    let (this, machine, run) = (sup.clone(), machine.clone(), run.clone());
    // Spawned, so the start goes on even if the request that began it goes away (and
    // on the main runtime: the request may be served on an edge worker).
    sup.spawn(async move {
        let began = Instant::now();
        let result = start::start(&this, &machine, source).await;
        report(&this, &machine, reason, began, &result);
        *run.wake_slot() = None;
        tx.send_replace(Some(result));
    });
    rx
}

/// The wake's line in the log and its count in the metrics.
fn report(
    sup: &Supervisor,
    machine: &Machine,
    reason: &str,
    began: Instant,
    result: &Result<(), WakeError>,
) {
    let failure = match result {
        Ok(()) => None,
        Err(error) => Some((failure_kind(error), error as &dyn std::fmt::Display)),
    };
    if let Err(WakeError::StartFailed(error)) = result {
        let operation = match **error {
            DriverError::Registry(_) | DriverError::ImageNotFound(_) => "pull",
            _ => "start",
        };
        sup.metrics.driver_error(operation);
    }
    observe::lifecycle::woke(&sup.metrics, machine, reason, began.elapsed(), failure);
}

fn failure_kind(error: &WakeError) -> &'static str {
    match error {
        WakeError::Exited(_) => "exited",
        WakeError::StartFailed(_) => "start_failed",
        WakeError::Timeout(_) => "timeout",
        WakeError::BackingOff(_) => "backing_off",
        WakeError::Gone => "gone",
        WakeError::ShuttingDown => "shutdown",
    }
}
