//! Lifecycle calls beyond start and stop: restart, signal, suspend, exec. Each runs
//! under the machine's lifecycle lock, so it never interleaves with a wake or an idle
//! stop, and a restart runs in a task of its own, so a client hanging up cannot cut it
//! short.

use super::error::{OperationError, WakeError};
use super::stop::{StopRequest, stop, stop_locked};
use super::{Supervisor, start};
use crate::drivers::ExecOutput;
use crate::machines::{EventSource, Machine, MachineState};
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::Duration;

/// What edgewake says in a suspend's event: there are no snapshots here.
pub const SUSPEND_NOTE: &str =
    "edgewake has no memory snapshots: the machine was stopped instead of suspended";

pub(super) async fn restart(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    request: StopRequest,
) -> Result<(), OperationError> {
    let (this, machine) = (sup.clone(), machine.clone());
    let restart = sup.spawn(async move { restart_now(&this, &machine, request).await });
    restart
        .await
        .unwrap_or(Err(OperationError::Start(WakeError::ShuttingDown)))
}

async fn restart_now(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    mut request: StopRequest,
) -> Result<(), OperationError> {
    let run = sup.runs.of(machine);
    let mut running = run.lock.lock().await;
    if running.instance.is_none() || machine.state() != MachineState::Started {
        return Err(OperationError::NotRunning(machine.state()));
    }
    request.kind = "restart";
    stop_locked(sup, machine, &mut running, request).await;
    start::start_locked(sup, machine, &mut running, "start", request.source).await?;
    Ok(())
}

/// Sends a signal to a running machine's processes (its exit, if it exits, is recorded
/// as any exit is).
pub(super) async fn signal(
    sup: &Supervisor,
    machine: &Machine,
    signal: Signal,
) -> Result<(), OperationError> {
    let run = sup.runs.of(machine);
    let running = run.lock.lock().await;
    let instance = running
        .instance
        .as_ref()
        .ok_or(OperationError::NotRunning(machine.state()))?;
    sup.driver.signal(instance, signal);
    tracing::info!(machine = %machine.id, "sent {signal}");
    Ok(())
}

/// Runs a command inside a running machine. The machine is not held: a stop during the
/// command ends it.
pub(super) async fn exec(
    sup: &Supervisor,
    machine: &Machine,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, OperationError> {
    let run = sup.runs.of(machine);
    let instance = run
        .lock
        .lock()
        .await
        .instance
        .clone()
        .ok_or(OperationError::NotRunning(machine.state()))?;
    let launch = sup.launch(machine);
    sup.driver
        .exec(&launch, &instance, command, timeout)
        .await
        .map_err(OperationError::Exec)
}

pub(super) async fn suspend(sup: &Arc<Supervisor>, machine: &Arc<Machine>, source: EventSource) {
    let mut request = StopRequest::new(source);
    request.kind = "suspend";
    request.note = Some(SUSPEND_NOTE);
    stop(sup, machine, request).await;
}
