//! Waking a machine: every request that finds it stopped joins one shared start
//! (single-flight), which goes on even if the request that began it goes away; while
//! starts are held off after failed ones, a request fails at once instead.

use super::error::WakeError;
use super::run::WakeAttempt;
use super::{Supervisor, start};
use crate::machines::{EventSource, Machine};
use std::sync::Arc;
use tokio::sync::watch;

/// Starts the machine unless it is started, sharing one start among all callers.
pub(super) async fn wake(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
) -> Result<(), WakeError> {
    let mut attempt = join_or_begin(sup, machine, source);
    let outcome = attempt.wait_for(Option::is_some).await;
    match outcome {
        Ok(result) => result.clone().unwrap_or(Err(WakeError::ShuttingDown)),
        Err(_) => Err(WakeError::ShuttingDown),
    }
}

/// Begins a wake without waiting for it. Registered before returning, so a later stop
/// waits for it.
pub(super) fn begin(sup: &Arc<Supervisor>, machine: &Arc<Machine>, source: EventSource) {
    let _ = join_or_begin(sup, machine, source);
}

fn join_or_begin(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
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
    let (sup, machine, run) = (sup.clone(), machine.clone(), run.clone());
    let tasks = sup.tasks.clone();
    // Spawned, so the start goes on even if the request that began it goes away.
    tasks.spawn(async move {
        let result = start::start(&sup, &machine, source).await;
        if let Err(e) = &result {
            tracing::warn!(machine = %machine.id, "wake failed: {e}");
        }
        *run.wake_slot() = None;
        tx.send_replace(Some(result));
    });
    rx
}
