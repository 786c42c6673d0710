//! Lifecycle calls beyond start and stop: restart, signal, suspend. Each runs under the
//! machine's lifecycle lock, so it never interleaves with a wake or an idle stop, and
//! a restart runs in a task of its own, so a client hanging up cannot cut it short.

use super::driver::{DriverError, ExecOutput};
use super::machine::Machine;
use super::record::{EventSource, MachineState};
use super::stopping::StopRequest;
use super::supervisor::Supervisor;
use crate::wake::WakeError;
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::Duration;

/// What edgewake says in a suspend's event: there are no snapshots here.
pub const SUSPEND_NOTE: &str =
    "edgewake has no memory snapshots: the machine was stopped instead of suspended";

/// Why a lifecycle call could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("machine is {}, not started", .0.as_str())]
    NotRunning(MachineState),
    #[error(transparent)]
    Start(#[from] WakeError),
    #[error(transparent)]
    Exec(DriverError),
}

impl Supervisor {
    /// Stops a started machine and starts it again, as one lifecycle change.
    pub async fn restart(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        request: StopRequest,
    ) -> Result<(), OperationError> {
        let (this, machine) = (self.clone(), machine.clone());
        let restart = self
            .tasks
            .spawn(async move { this.restart_now(&machine, request).await });
        restart
            .await
            .unwrap_or(Err(OperationError::Start(WakeError::ShuttingDown)))
    }

    async fn restart_now(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        mut request: StopRequest,
    ) -> Result<(), OperationError> {
        let mut life = machine.lifecycle.lock().await;
        if life.instance.is_none() || machine.state() != MachineState::Started {
            return Err(OperationError::NotRunning(machine.state()));
        }
        request.kind = "restart";
        self.stop_locked(machine, &mut life, request).await;
        self.start_locked(machine, &mut life, "start", request.source)
            .await?;
        Ok(())
    }

    /// Sends a signal to a running machine's processes (its exit, if it exits, is
    /// recorded as any exit is).
    pub async fn signal(&self, machine: &Machine, signal: Signal) -> Result<(), OperationError> {
        let life = machine.lifecycle.lock().await;
        let instance = life
            .instance
            .as_ref()
            .ok_or(OperationError::NotRunning(machine.state()))?;
        self.driver().signal(instance, signal);
        tracing::info!(machine = %machine.id, "sent {signal}");
        Ok(())
    }

    /// Runs a command inside a running machine (Fly's exec) and returns its output.
    /// The machine is not held: a stop during the command ends it.
    pub async fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, OperationError> {
        let instance = machine
            .lifecycle
            .lock()
            .await
            .instance
            .clone()
            .ok_or(OperationError::NotRunning(machine.state()))?;
        let launch = self.launch(machine);
        self.driver()
            .exec(&launch, &instance, command, timeout)
            .await
            .map_err(OperationError::Exec)
    }

    /// Fly's suspend, which edgewake does as a stop whose first event is a `suspend`
    /// saying so.
    pub async fn suspend(self: &Arc<Self>, machine: &Arc<Machine>, source: EventSource) {
        let mut request = StopRequest::new(source);
        request.kind = "suspend";
        request.note = Some(SUSPEND_NOTE);
        self.stop(machine, request).await;
    }
}
