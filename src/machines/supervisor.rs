//! The supervisor starts and stops machines through the driver, one lifecycle change at
//! a time per machine, and keeps the registry's states true to what is running.

use super::driver::{Driver, Exit, Instance, Launch};
use super::machine::{Lifecycle, Machine};
use super::record::{EventSource, MachineEvent, MachineState};
use super::registry::Registry;
use crate::wake::{WakeError, until_ready};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Marks the exit events of machines that edgewake stopped because it was shutting down.
pub const SHUTDOWN_REASON: &str = "edgewake shutdown";

/// Timing and signals for starts and stops.
#[derive(Debug, Clone)]
pub struct Settings {
    pub wake_timeout: Duration,
    pub probe_interval: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
}

pub struct Supervisor {
    pub registry: Arc<Registry>,
    pub(super) driver: Arc<dyn Driver>,
    pub(super) settings: Settings,
    pub(super) tasks: TaskTracker,
    pub(super) shutting_down: AtomicBool,
}

impl Supervisor {
    pub fn new(registry: Arc<Registry>, driver: Arc<dyn Driver>, settings: Settings) -> Supervisor {
        Supervisor {
            registry,
            driver,
            settings,
            tasks: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn driver(&self) -> &dyn Driver {
        &*self.driver
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub(crate) fn launch(&self, machine: &Machine) -> Launch {
        let spec = machine.spec();
        let record = machine.record();
        Launch {
            machine_id: machine.id.clone(),
            app: machine.app.clone(),
            region: machine.region.clone(),
            instance_id: record.instance_id.clone(),
            private_ip: machine.private_ip,
            image: spec.image.clone(),
            env: spec.env.clone(),
            port: spec.internal_ports().first().copied().unwrap_or(8080),
            init: spec.init.clone(),
            guest: spec.guest.resolve(),
        }
    }

    /// Starts a stopped machine and waits until it listens. Callers go through `wake`,
    /// which shares one start among everyone waiting.
    pub(crate) async fn start(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        source: EventSource,
    ) -> Result<(), WakeError> {
        let mut life = machine.lifecycle.lock().await;
        match machine.state() {
            MachineState::Started => return Ok(()),
            MachineState::Destroying | MachineState::Destroyed => return Err(WakeError::Gone),
            _ => {}
        }
        self.start_locked(machine, &mut life, "start", source).await
    }

    /// Runs the machine and waits until it listens; `kind` names the event. The caller
    /// holds the lifecycle lock and knows the machine is not running.
    pub(crate) async fn start_locked(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        life: &mut Lifecycle,
        kind: &str,
        source: EventSource,
    ) -> Result<(), WakeError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(WakeError::ShuttingDown);
        }
        life.generation += 1;
        self.registry
            .transition(machine, MachineState::Starting, None);
        let probe_addr = machine
            .spec()
            .internal_ports()
            .first()
            .map(|p| SocketAddr::from((machine.private_ip, *p)));
        let began = std::time::Instant::now();
        let instance = match self.driver.start(self.launch(machine)).await {
            Ok(instance) => instance,
            Err(e) => {
                let event = MachineEvent::exit(Exit::UNKNOWN, false);
                self.registry
                    .transition(machine, MachineState::Stopped, Some(event));
                return Err(WakeError::StartFailed(e.to_string()));
            }
        };
        self.registry.set_pid(machine, Some(instance.pid));
        let s = &self.settings;
        if let Err(e) = until_ready(probe_addr, &instance, s.probe_interval, s.wake_timeout).await {
            self.fail_start(machine, &instance).await;
            return Err(e);
        }
        machine.activity.touch();
        self.watch_exit(machine, life.generation, instance.clone());
        life.instance = Some(instance);
        let mut event = MachineEvent::new(kind, MachineState::Started, source);
        // The machine's own boot: from spawn to accepting on its port (probe included).
        event.request = Some(serde_json::json!({ "boot_us": began.elapsed().as_micros() as u64 }));
        self.registry
            .transition(machine, MachineState::Started, Some(event));
        tracing::info!(machine = %machine.id, app = %machine.app, "machine started");
        Ok(())
    }

    /// Kills a machine that did not become ready and records how it ended.
    async fn fail_start(&self, machine: &Machine, instance: &Instance) {
        let exit = self
            .driver
            .stop(instance, Signal::SIGKILL, Duration::ZERO)
            .await;
        self.registry.set_pid(machine, None);
        let event = MachineEvent::exit(exit, false);
        self.registry
            .transition(machine, MachineState::Stopped, Some(event));
    }

    /// Marks a machine stopped when its process exits by itself.
    fn watch_exit(self: &Arc<Self>, machine: &Arc<Machine>, generation: u64, instance: Instance) {
        let (this, machine) = (self.clone(), machine.clone());
        self.tasks.spawn(async move {
            let exit = instance.exited().await;
            let mut life = machine.lifecycle.lock().await;
            if life.generation != generation || life.instance.take().is_none() {
                return; // stopped on purpose, or already started again
            }
            this.registry.set_pid(&machine, None);
            let event = MachineEvent::exit(exit, false);
            this.registry.transition(&machine, MachineState::Stopped, Some(event));
            tracing::info!(machine = %machine.id, "machine exited by itself ({})", crate::wake::describe_exit(exit));
        });
    }
}
