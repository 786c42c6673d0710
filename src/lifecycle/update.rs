//! Updating a machine: a full new config (Fly has no partial update) and a new version
//! (`instance_id`). A running machine is stopped, given the new config, and started
//! again; `skip_launch` leaves it stopped.

use super::error::UpdateError;
use super::stop::{StopRequest, stop_locked};
use super::{Supervisor, wake};
use crate::machines::record::ImageRef;
use crate::machines::spec::MachineSpec;
use crate::machines::{EventSource, Machine, MachineEvent};
use serde_json::Value;
use std::sync::Arc;

/// What an update brings.
pub struct Update {
    pub config: Value,
    pub spec: MachineSpec,
    /// Fly's `current_version`: the update applies only if the machine is still at it.
    pub expected_version: Option<String>,
    pub skip_launch: bool,
    /// Fly's `skip_service_registration`: `Some` sets the cordon, `None` keeps it.
    pub cordoned: Option<bool>,
}

/// Applies an update under the lifecycle lock (in a task of its own, so a client
/// hanging up cannot leave it half done), then starts the machine in the background
/// unless `skip_launch`.
pub(super) async fn update(
    sup: &Arc<Supervisor>,
    machine: &Arc<Machine>,
    update: Update,
) -> Result<(), UpdateError> {
    let (this, machine) = (sup.clone(), machine.clone());
    let task = sup.spawn(async move {
        let skip_launch = update.skip_launch;
        update_now(&this, &machine, update).await?;
        if !skip_launch {
            wake::begin(&this, &machine, EventSource::User, "update");
        }
        Ok(())
    });
    task.await.unwrap_or(Err(UpdateError::Gone))
}

async fn update_now(
    sup: &Supervisor,
    machine: &Machine,
    update: Update,
) -> Result<(), UpdateError> {
    let run = sup.runs.of(machine);
    let mut running = run.lock.lock().await;
    if machine.is_gone() {
        return Err(UpdateError::Gone);
    }
    let current = machine.record().instance_id.clone();
    if let Some(expected) = update.expected_version.filter(|v| *v != current) {
        return Err(UpdateError::StaleVersion { current, expected });
    }
    let mut stop = StopRequest::new(EventSource::User);
    stop.kind = "update";
    stop_locked(sup, machine, &mut running, stop).await;
    run.backoff().reset(); // the new config may start where the old one failed
    let image_ref = ImageRef::parse(&update.spec.image);
    machine.set_spec(update.spec);
    if let Some(cordoned) = update.cordoned {
        machine.set_cordoned(cordoned);
    }
    sup.registry.edit(machine, |record| {
        record.config = update.config;
        record.image_ref = image_ref;
        record.instance_id = crate::ids::ulid();
        record.cordoned = machine.is_cordoned();
        let event = MachineEvent::new("update", record.state, EventSource::User);
        record.push_event(event);
    });
    tracing::info!(machine = %machine.id, "machine updated");
    Ok(())
}
