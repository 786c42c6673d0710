//! The reaper stops machines that have had no request in flight for the idle timeout.

use super::{Supervisor, stop};
use crate::machines::MachineState;
use crate::machines::spec::{Autostop, MachineSpec};
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
        for machine in supervisor.registry.all_machines() {
            let idle = machine.state() == MachineState::Started
                && machine.activity.idle_for() >= idle_timeout
                && autostops(&machine.spec());
            if idle {
                let supervisor = supervisor.clone();
                tokio::spawn(async move {
                    stop::stop_if_idle(&supervisor, &machine, idle_timeout).await
                });
            }
        }
    }
}
