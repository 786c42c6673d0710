//! The supervisor starts and stops machines through the driver, one lifecycle change at
//! a time per machine, and keeps the registry's states true to what is running.

use super::driver::{Driver, Instance, Launch};
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

pub struct Supervisor {
    pub registry: Arc<Registry>,
    driver: Arc<dyn Driver>,
    settings: Settings,
    tasks: TaskTracker,
    shutting_down: AtomicBool,
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

    fn launch(&self, machine: &Machine) -> Launch {
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

    /// Runs the machine and waits until it listens; `kind` names the event (`start`,
    /// `restart`). The caller holds the lifecycle lock and knows the machine is stopped.
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
        let instance = match self.driver.start(self.launch(machine)).await {
            Ok(instance) => instance,
            Err(e) => {
                let event = MachineEvent::exit(None, None, false);
                self.registry
                    .transition(machine, MachineState::Stopped, Some(event));
                return Err(WakeError::StartFailed(e.to_string()));
            }
        };
        self.registry.set_pid(machine, Some(instance.pid));
        let s = &self.settings;
        if let Err(e) = until_ready(probe_addr, &instance, s.probe_interval, s.wake_timeout).await {
            self.fail_start(machine, &instance, &e).await;
            return Err(e);
        }
        machine.activity.touch();
        self.watch_exit(machine, life.generation, instance.clone());
        life.instance = Some(instance);
        let event = MachineEvent::new(kind, MachineState::Started, source);
        self.registry
            .transition(machine, MachineState::Started, Some(event));
        tracing::info!(machine = %machine.id, app = %machine.app, "machine started");
        Ok(())
    }

    /// Kills a machine that did not become ready and records how it ended.
    async fn fail_start(&self, machine: &Machine, instance: &Instance, error: &WakeError) {
        let exit = self
            .driver
            .stop(instance, Signal::SIGKILL, Duration::ZERO)
            .await;
        self.registry.set_pid(machine, None);
        let event = MachineEvent::exit(exit.code, exit.signal, false);
        self.registry
            .transition(machine, MachineState::Stopped, Some(event));
        tracing::warn!(machine = %machine.id, "wake failed: {error}");
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
            let event = MachineEvent::exit(exit.code, exit.signal, false);
            this.registry.transition(&machine, MachineState::Stopped, Some(event));
            tracing::info!(machine = %machine.id, "machine exited by itself ({})", crate::wake::describe_exit(exit));
        });
    }

    /// Stops a machine (a no-op when it is not running) and waits until it has exited.
    pub async fn stop(&self, machine: &Machine, request: StopRequest) {
        let mut life = machine.lifecycle.lock().await;
        self.stop_locked(machine, &mut life, request).await;
    }

    pub(crate) async fn stop_locked(
        &self,
        machine: &Machine,
        life: &mut Lifecycle,
        request: StopRequest,
    ) {
        let Some(instance) = life.instance.take() else {
            return;
        };
        let mut event = MachineEvent::new(request.kind, MachineState::Stopping, request.source);
        if let Some(note) = request.note {
            event.request = Some(serde_json::json!({ "message": note }));
        }
        self.registry
            .transition(machine, MachineState::Stopping, Some(event));
        let spec = machine.spec();
        let signal = request
            .signal
            .or(spec.stop_signal())
            .unwrap_or(self.settings.stop_signal);
        let timeout = request
            .timeout
            .or(spec.stop_config.timeout)
            .unwrap_or(self.settings.stop_timeout);
        let exit = self.driver.stop(&instance, signal, timeout).await;
        self.registry.set_pid(machine, None);
        let mut event = MachineEvent::exit(exit.code, exit.signal, true);
        if let (Some(reason), Some(request)) = (request.reason, event.request.as_mut()) {
            request["reason"] = reason.into();
        }
        self.registry
            .transition(machine, MachineState::Stopped, Some(event));
    }

    /// Stops the machine if it runs and marks it destroyed, under one lifecycle lock so
    /// no request can wake it in between.
    pub async fn destroy(&self, machine: &Machine, source: EventSource) {
        let mut life = machine.lifecycle.lock().await;
        self.stop_locked(machine, &mut life, StopRequest::new(source))
            .await;
        let event = MachineEvent::new("destroy", MachineState::Destroyed, source);
        self.registry
            .transition(machine, MachineState::Destroyed, Some(event));
    }

    /// Stops a machine only if it is still idle once no request can slip in: the state
    /// goes to `stopping` first, then the in-flight count is read. A request counts
    /// itself in first, then reads the state, so one of the two always sees the other.
    pub async fn stop_if_idle(&self, machine: &Machine, idle_timeout: Duration) -> bool {
        let Ok(mut life) = machine.lifecycle.try_lock() else {
            return false;
        };
        if machine.state() != MachineState::Started || life.instance.is_none() {
            return false;
        }
        machine.set_state(MachineState::Stopping);
        if machine.activity.idle_for() < idle_timeout {
            machine.set_state(MachineState::Started);
            return false;
        }
        tracing::info!(machine = %machine.id, app = %machine.app, "stopping idle machine");
        self.stop_locked(machine, &mut life, StopRequest::new(EventSource::Edgewake))
            .await;
        true
    }

    /// Refuses new starts, then stops every running machine and waits for its tasks.
    pub async fn shutdown(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let mut stops = tokio::task::JoinSet::new();
        for machine in self.registry.all_machines() {
            let this = self.clone();
            stops.spawn(async move {
                let mut life = machine.lifecycle.lock().await;
                let mut request = StopRequest::new(EventSource::Edgewake);
                request.reason = Some(SHUTDOWN_REASON);
                this.stop_locked(&machine, &mut life, request).await;
            });
        }
        while stops.join_next().await.is_some() {}
        self.tasks.close();
        self.tasks.wait().await;
    }
}
