//! An app and its machines: the list the proxy reads on every request, and the records
//! of destroyed machines kept for `include_deleted`.

use super::machine::Machine;
use super::record::MachineRecord;
use super::store::AppRecord;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// How many destroyed machines an app remembers (for `include_deleted`); older ones are
/// forgotten for good.
pub const MAX_DESTROYED_KEPT: usize = 100;

/// An app and its machines.
#[derive(Debug)]
pub struct App {
    pub record: AppRecord,
    machines: RwLock<Vec<Arc<Machine>>>,
    /// The machines' names (they never change), so a create checks one in O(1).
    names: Mutex<HashSet<String>>,
    /// Records of destroyed machines, oldest first: listed only when asked for.
    destroyed: Mutex<VecDeque<MachineRecord>>,
}

impl App {
    pub(super) fn new(record: AppRecord) -> App {
        App {
            record,
            machines: RwLock::new(Vec::new()),
            names: Mutex::new(HashSet::new()),
            destroyed: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn names(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records of the app's destroyed machines, oldest first.
    pub fn destroyed(&self) -> Vec<MachineRecord> {
        let destroyed = self.destroyed.lock().unwrap_or_else(|p| p.into_inner());
        destroyed.iter().cloned().collect()
    }

    /// Keeps a destroyed machine's record; returns the id of one forgotten to make room.
    pub(super) fn remember_destroyed(&self, record: MachineRecord) -> Option<String> {
        let mut destroyed = self.destroyed.lock().unwrap_or_else(|p| p.into_inner());
        destroyed.push_back(record);
        (destroyed.len() > MAX_DESTROYED_KEPT)
            .then(|| destroyed.pop_front().map(|r| r.id))
            .flatten()
    }

    /// The app's machines, oldest first.
    pub fn machines(&self) -> Vec<Arc<Machine>> {
        self.machines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` over the machines without copying the list (the proxy's hot path).
    pub fn with_machines<T>(&self, f: impl FnOnce(&[Arc<Machine>]) -> T) -> T {
        f(&self.machines.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn push(&self, machine: Arc<Machine>) {
        self.names().insert(machine.record().name.clone());
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(machine);
    }

    pub(super) fn remove(&self, machine: &Machine) {
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|m| m.id != machine.id);
        self.names().remove(&machine.record().name);
    }
}
