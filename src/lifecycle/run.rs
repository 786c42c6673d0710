//! What edgewake holds for each machine it runs: the lock that orders its starts and
//! stops, the instance while one runs, and the wake in progress that requests join.
//! Kept here rather than on the `Machine` record, which is data every part reads.

use super::error::WakeError;
use crate::drivers::Instance;
use crate::machines::Machine;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// What only one start or stop at a time may touch.
#[derive(Debug, Default)]
pub(super) struct Running {
    /// The running instance, while there is one.
    pub instance: Option<Instance>,
    /// Bumped on every start, so a late exit of an old run is not taken for the new one.
    pub generation: u64,
}

/// The outcome of the wake in progress, shared by everyone waiting on it.
pub(super) type WakeAttempt = watch::Receiver<Option<Result<(), WakeError>>>;

/// One machine's lifecycle state.
#[derive(Debug, Default)]
pub(super) struct Run {
    /// Held for the whole of a start, stop, restart or update.
    pub lock: tokio::sync::Mutex<Running>,
    /// The wake in progress, which every waiting request joins.
    wake: Mutex<Option<WakeAttempt>>,
}

impl Run {
    pub fn wake_slot(&self) -> MutexGuard<'_, Option<WakeAttempt>> {
        self.wake.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The runs of every machine, by machine id.
#[derive(Debug, Default)]
pub(super) struct Runs(DashMap<String, Arc<Run>>);

impl Runs {
    /// The machine's run, made on first use.
    pub fn of(&self, machine: &Machine) -> Arc<Run> {
        if let Some(run) = self.0.get(&machine.id) {
            return run.clone();
        }
        self.0.entry(machine.id.clone()).or_default().clone()
    }

    /// Whether a wake of this machine is under way.
    pub fn is_waking(&self, machine: &Machine) -> bool {
        self.0
            .get(&machine.id)
            .is_some_and(|run| run.wake_slot().is_some())
    }

    /// Drops a destroyed machine's run.
    pub fn forget(&self, machine: &Machine) {
        self.0.remove(&machine.id);
    }

    /// How many machines have a run (tests: destroyed machines leave none behind).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.0.len()
    }
}
