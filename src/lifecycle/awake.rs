//! Keep-awake: a machine says it is busy (a response header, or a call from inside it),
//! and the reaper leaves it running for that long; its idle time counts from then.

use super::Supervisor;
use crate::machines::{EventSource, Machine, MachineEvent, MachineState};
use crate::observe;
use std::time::Duration;

pub(super) fn keep_awake(sup: &Supervisor, machine: &Machine, period: Duration, how: &'static str) {
    if machine.state() != MachineState::Started {
        return; // a stopped machine has nothing to keep
    }
    let new_period = machine.activity.kept_awake_for().is_zero();
    machine.activity.keep_awake(period);
    if !new_period {
        // Extending a period already running: counted, not recorded again (a machine
        // sending the header on every answer must not flood its events).
        crate::metrics::Metrics::count(&sup.metrics.keep_awakes, &machine.app, how);
        return;
    }
    let source = match how {
        "api" => EventSource::User,
        _ => EventSource::Edgewake,
    };
    let mut event = MachineEvent::new("keep_awake", MachineState::Started, source);
    event.request = Some(serde_json::json!({
        "for_ms": period.as_millis() as u64,
        "via": how,
    }));
    sup.registry
        .edit(machine, |record| record.push_event(event));
    observe::lifecycle::kept_awake(&sup.metrics, machine, how, period);
}
