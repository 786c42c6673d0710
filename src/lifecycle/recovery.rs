//! Boot-time reconciliation: after a restart or a crash, every machine's state is made
//! true again. Nothing survives edgewake — what a crash left running is killed, and
//! waited for — so every machine comes back `stopped` (and wakes on the next request),
//! except that a machine with `restart.policy = "always"` that was running when
//! edgewake went down is started again.

use super::{SHUTDOWN_REASON, Supervisor, wake};
use crate::drivers::Exit;
use crate::machines::store::StoredMachine;
use crate::machines::{EventSource, MachineEvent, MachineRecord, MachineState};
use std::sync::Arc;

/// Reaps every orphan first, all at once, and waits until they are gone: nothing may
/// start a machine (a restart policy, a request once edgewake serves) while its old
/// run still holds its address.
pub(super) async fn recover(sup: &Arc<Supervisor>, stored: Vec<StoredMachine>) {
    let reaps = stored.iter().filter_map(|stored| {
        let pid = stored.pid?;
        let machine = sup.registry.machine(&stored.app, &stored.record.id)?;
        Some(async move {
            sup.driver.reap_orphan(&machine.id, pid).await;
            sup.registry.set_pid(&machine, None);
        })
    });
    futures_util::future::join_all(reaps).await;
    for stored in stored {
        let Some(machine) = sup.registry.machine(&stored.app, &stored.record.id) else {
            continue;
        };
        let was_running = was_running(&stored.record);
        if is_live(stored.record.state) {
            let event = MachineEvent::exit(Exit::UNKNOWN, false);
            sup.registry
                .transition(&machine, MachineState::Stopped, Some(event));
        }
        if was_running && machine.spec().restarts_always() {
            let this = sup.clone();
            sup.spawn(async move {
                let wake = wake::wake_for(&this, &machine, EventSource::Edgewake, "restart");
                if let Err(e) = wake.await {
                    tracing::warn!(machine = %machine.id, "restart policy `always`: {e}");
                }
            });
        }
    }
}

fn is_live(state: MachineState) -> bool {
    matches!(
        state,
        MachineState::Starting | MachineState::Started | MachineState::Stopping
    )
}

/// Running when edgewake went down: a crash left it live, or a clean shutdown stopped it.
fn was_running(record: &MachineRecord) -> bool {
    is_live(record.state)
        || record.events.first().is_some_and(|event| {
            event
                .request
                .as_ref()
                .and_then(|r| r.get("reason"))
                .and_then(|r| r.as_str())
                == Some(SHUTDOWN_REASON)
        })
}
