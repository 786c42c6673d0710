//! One log line per wake (machine, reason, how long) and per stop (machine, reason),
//! each also counted in the metrics by app and reason.

use crate::machines::Machine;
use crate::metrics::Metrics;
use std::time::Duration;

/// A wake that ended: `failure` is its kind (`exited`, `start_failed`, `timeout`) and
/// what went wrong, when it failed.
pub fn woke(
    metrics: &Metrics,
    machine: &Machine,
    reason: &str,
    took: Duration,
    failure: Option<(&str, &dyn std::fmt::Display)>,
) {
    let ms = took.as_millis() as u64;
    match failure {
        None => {
            Metrics::count(&metrics.wakes, &machine.app, reason);
            tracing::info!(machine = %machine.id, app = %machine.app, region = %machine.region,
                reason, ms, "wake: machine started in {ms} ms");
        }
        Some((kind, error)) => {
            Metrics::count(&metrics.wake_failures, &machine.app, kind);
            tracing::warn!(machine = %machine.id, app = %machine.app, region = %machine.region,
                reason, ms, failure = kind, "wake failed after {ms} ms: {error}");
        }
    }
}

/// A stop that ended (`idle`, `api`, `exit`, `shutdown`, `update`, `restart`, `destroy`).
pub fn stopped(metrics: &Metrics, machine: &Machine, reason: &str, exit: &str) {
    Metrics::count(&metrics.stops, &machine.app, reason);
    tracing::info!(machine = %machine.id, app = %machine.app, region = %machine.region,
        reason, "stop: machine stopped ({exit})");
}

/// A keep-awake signal the machine sent (`header`, `api`).
pub fn kept_awake(metrics: &Metrics, machine: &Machine, how: &str, period: Duration) {
    Metrics::count(&metrics.keep_awakes, &machine.app, how);
    tracing::info!(machine = %machine.id, app = %machine.app, how,
        "keep-awake: busy for {period:?}");
}
