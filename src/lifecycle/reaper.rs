//! The reaper stops machines that have had no request in flight for the idle timeout.

use super::{Supervisor, stop};
use crate::machines::MachineState;
use crate::machines::spec::{Autostop, MachineSpec};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether idle machines with this config are stopped: every service autostops (a
/// machine without services is not reached through the proxy and is left alone).
pub fn autostops(spec: &MachineSpec) -> bool {
    !spec.services.is_empty() && spec.services.iter().all(|s| s.autostop == Autostop::Stop)
}

/// Looks for idle machines every `interval` until `cancel` fires.
pub(super) async fn run(
    supervisor: Arc<Supervisor>,
    idle_timeout: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for machine in supervisor.registry.local_machines() {
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
