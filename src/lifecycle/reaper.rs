//! The reaper stops machines that have had no request in flight for the idle timeout
//! (a keep-awake moves that moment on), but never the last `min_machines_running`
//! started machines of an app in a region (Fly keeps them in its primary region only).

use super::{Supervisor, stop};
use crate::machines::spec::{Autostop, MachineSpec};
use crate::machines::{Machine, MachineState};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Whether idle machines with this config are stopped: every service autostops (a
/// machine without services is not reached through the proxy and is left alone).
pub fn autostops(spec: &MachineSpec) -> bool {
    !spec.services.is_empty() && spec.services.iter().all(|s| s.autostop == Autostop::Stop)
}

/// Looks for idle machines every `reap_interval` until `cancel` fires; both timings are
/// read from the settings at each round, so a reload applies at the next one.
pub(super) async fn run(supervisor: Arc<Supervisor>, cancel: CancellationToken) {
    loop {
        let (idle_timeout, interval) = {
            let settings = supervisor.settings();
            (settings.idle_timeout, settings.reap_interval)
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        // Only machines hosted here: other nodes stop their own.
        let machines = supervisor.registry.local_machines();
        let mut running = running_by_region(&machines);
        for machine in machines {
            let idle = machine.state() == MachineState::Started
                && machine.activity.idle_for() >= idle_timeout
                && autostops(&machine.spec());
            if idle && above_minimum(&mut running, &machine) {
                let supervisor = supervisor.clone();
                tokio::spawn(async move {
                    stop::stop_if_idle(&supervisor, &machine, idle_timeout).await
                });
            }
        }
    }
}

/// Started machines that take traffic, by app and region.
fn running_by_region(machines: &[Arc<Machine>]) -> HashMap<(String, String), usize> {
    let mut running = HashMap::new();
    for m in machines {
        if m.state() == MachineState::Started && !m.is_cordoned() {
            *running
                .entry((m.app.clone(), m.region.clone()))
                .or_insert(0) += 1;
        }
    }
    running
}

/// Whether stopping `machine` leaves its app at least `min_machines_running` started
/// machines in its region; if so, it counts as stopped for the rest of this pass (so
/// two idle machines cannot both go under a minimum of one).
fn above_minimum(running: &mut HashMap<(String, String), usize>, machine: &Machine) -> bool {
    let spec = machine.spec();
    let minimum = spec
        .services
        .iter()
        .map(|s| s.min_machines_running)
        .max()
        .unwrap_or(0);
    if minimum == 0 {
        return true;
    }
    let key = (machine.app.clone(), machine.region.clone());
    let count = running.entry(key).or_insert(0);
    if *count <= minimum {
        return false;
    }
    *count -= 1;
    true
}
