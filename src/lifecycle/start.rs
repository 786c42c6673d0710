//! Starting a machine: the driver runs it, then the supervisor probes its port until it
//! accepts (the driver says whether it does), its process exits, or the wake timeout
//! passes; afterwards it watches for the machine to exit by itself.

use super::Supervisor;
use super::error::WakeError;
use super::run::Running;
use crate::drivers::{Exit, Instance};
use crate::machines::{EventSource, Machine, MachineEvent, MachineState};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Starts a stopped machine and waits until it listens. Callers go through `wake`,
/// which shares one start among everyone waiting.
pub(super) async fn start(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    source: EventSource,
) -> Result<(), WakeError> {
    let run = sup.runs.of(machine);
    let mut running = run.lock.lock().await;
    match machine.state() {
        MachineState::Started => return Ok(()),
        MachineState::Destroying | MachineState::Destroyed => return Err(WakeError::Gone),
        _ => {}
    }
    start_locked(sup, machine, &mut running, "start", source).await
}

/// Runs the machine and waits until it listens; `kind` names the event. The caller
/// holds the lifecycle lock and knows the machine is not running.
pub(super) async fn start_locked(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    running: &mut Running,
    kind: &str,
    source: EventSource,
) -> Result<(), WakeError> {
    if sup.shutting_down.load(Ordering::SeqCst) {
        return Err(WakeError::ShuttingDown);
    }
    let run = sup.runs.of(machine);
    if source == EventSource::User {
        run.backoff().reset(); // asked for on purpose: tried at once
    }
    let result = run_until_ready(sup, machine, running, kind, source).await;
    match &result {
        Ok(()) => run.backoff().reset(),
        Err(WakeError::ShuttingDown | WakeError::Gone | WakeError::BackingOff(_)) => {}
        Err(_) => {
            let (failures, delay) = run.backoff().failed();
            record_backoff(sup, machine, failures, delay);
        }
    }
    result
}

/// Says in the machine's events that starts are held off, and for how long.
fn record_backoff(sup: &Supervisor, machine: &Machine, failures: u32, delay: Duration) {
    let mut event = MachineEvent::new("backoff", machine.state(), EventSource::Edgewake);
    event.request = Some(serde_json::json!({
        "failed_starts": failures,
        "retry_in_ms": delay.as_millis() as u64,
        "message": "requests do not start the machine until then; an API start does",
    }));
    sup.registry
        .edit(machine, |record| record.push_event(event));
    tracing::warn!(
        machine = %machine.id,
        "{failures} failed start(s) in a row: starts held off for {delay:?}"
    );
}

/// Runs the machine and waits until it listens.
async fn run_until_ready(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    running: &mut Running,
    kind: &str,
    source: EventSource,
) -> Result<(), WakeError> {
    running.generation += 1;
    sup.registry
        .transition(machine, MachineState::Starting, None);
    let began = std::time::Instant::now();
    let instance = match sup.driver.start(sup.launch(machine)).await {
        Ok(instance) => instance,
        Err(e) => {
            let event = MachineEvent::exit(Exit::UNKNOWN, false);
            sup.registry
                .transition(machine, MachineState::Stopped, Some(event));
            return Err(WakeError::StartFailed(Arc::new(e)));
        }
    };
    sup.registry.set_pid(machine, Some(instance.pid));
    if let Err(e) = until_ready(sup, probe_addr(machine), &instance).await {
        fail_start(sup, machine, &instance).await;
        return Err(e);
    }
    machine.activity.reset();
    // Before `started`: no request may find it started and not yet checked.
    crate::checks::begin(machine, sup.settings().wake_timeout);
    watch_exit(sup, machine, running.generation, instance.clone());
    running.instance = Some(instance);
    let mut event = MachineEvent::new(kind, MachineState::Started, source);
    // The machine's own boot: from spawn to accepting on its port (probe included).
    event.request = Some(serde_json::json!({ "boot_us": began.elapsed().as_micros() as u64 }));
    sup.registry
        .transition(machine, MachineState::Started, Some(event));
    tracing::debug!(machine = %machine.id, app = %machine.app, "machine started");
    Ok(())
}

/// Where readiness is probed: the first service's internal port. A machine without
/// services is not reached through the proxy, so nothing is probed.
fn probe_addr(machine: &Machine) -> Option<SocketAddr> {
    let spec = machine.spec();
    let port = *spec.internal_ports().first()?;
    Some(SocketAddr::from((machine.private_ip, port)))
}

/// Kills a machine that did not become ready and records how it ended.
async fn fail_start(sup: &Supervisor, machine: &Machine, instance: &Instance) {
    let exit =
        super::stop::bounded_stop(sup, machine, instance, Signal::SIGKILL, Duration::ZERO).await;
    sup.registry.set_pid(machine, None);
    let event = MachineEvent::exit(exit, false);
    sup.registry
        .transition(machine, MachineState::Stopped, Some(event));
}

/// Marks a machine stopped when its process exits by itself.
fn watch_exit(sup: &Arc<Supervisor>, machine: &Arc<Machine>, generation: u64, instance: Instance) {
    // Taken now, while the start holds it: looked up after the exit, it would be made
    // again for a machine destroyed meanwhile, and kept forever.
    let run = sup.runs.of(machine);
    let (this, machine) = (sup.clone(), machine.clone());
    sup.spawn(async move {
        let exit = instance.exited().await;
        let mut running = run.lock.lock().await;
        if running.generation != generation || running.instance.take().is_none() {
            return; // stopped on purpose, or already started again
        }
        this.registry.set_pid(&machine, None);
        let event = MachineEvent::exit(exit, false);
        this.registry
            .transition(&machine, MachineState::Stopped, Some(event));
        crate::observe::lifecycle::stopped(&this.metrics, &machine, "exit", &describe_exit(exit));
    });
}

/// Waits until the machine accepts at `addr`, failing at once if its process exits and
/// after the wake timeout if it never listens.
async fn until_ready(
    sup: &Supervisor,
    addr: Option<SocketAddr>,
    instance: &Instance,
) -> Result<(), WakeError> {
    let Some(addr) = addr else { return Ok(()) };
    let timeout = sup.settings().wake_timeout;
    tokio::select! {
        biased;
        exit = instance.exited() => Err(WakeError::Exited(exit)),
        () = probe(sup, instance, addr) => Ok(()),
        () = tokio::time::sleep(timeout) => Err(WakeError::Timeout(timeout)),
    }
}

async fn probe(sup: &Supervisor, instance: &Instance, addr: SocketAddr) {
    let interval = sup.settings().probe_interval;
    while !sup.driver.accepts(instance, addr).await {
        tokio::time::sleep(interval).await;
    }
}

pub fn describe_exit(exit: Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exit status unknown".into(),
    }
}
