//! What edgewake holds for each machine it runs: the lock that orders its starts and
//! stops, the instance while one runs, the wake in progress that requests join, and
//! the back-off that holds starts off after failed ones.
//! Kept here rather than on the `Machine` record, which is data every part reads.

use super::error::WakeError;
use crate::drivers::Instance;
use crate::machines::Machine;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long starts are held off after a first failed start; each further failure in a
/// row doubles it, up to `MAX_START_BACKOFF`.
pub const FIRST_START_BACKOFF: Duration = Duration::from_secs(1);
/// The longest starts are held off: a machine fixed behind edgewake's back (a file, a
/// service it needs) is tried again within this.
pub const MAX_START_BACKOFF: Duration = Duration::from_secs(60);

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

/// Starts held off after failed ones, so a machine that crashes at start costs one
/// spawn per back-off, not one per request (clients can drive a crash loop).
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// Failed starts in a row.
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// Counts a failed start; returns how many in a row, and for how long starts are
    /// now held off.
    pub fn failed(&mut self) -> (u32, Duration) {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(16);
        let delay = FIRST_START_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_START_BACKOFF);
        self.until = Some(Instant::now() + delay);
        (self.failures, delay)
    }

    /// A start succeeded, or someone asked for one on purpose: no more holding off.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// How long starts are still held off, if they are.
    pub fn remaining(&self) -> Option<Duration> {
        let left = self.until?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }
}

/// One machine's lifecycle state.
#[derive(Debug, Default)]
pub(super) struct Run {
    /// Held for the whole of a start, stop, restart or update.
    pub lock: tokio::sync::Mutex<Running>,
    /// The wake in progress, which every waiting request joins.
    wake: Mutex<Option<WakeAttempt>>,
    /// Read by every request that would wake the machine, without its lifecycle lock.
    backoff: Mutex<Backoff>,
}

impl Run {
    pub fn wake_slot(&self) -> MutexGuard<'_, Option<WakeAttempt>> {
        self.wake.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn backoff(&self) -> MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
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
