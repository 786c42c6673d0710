//! Changes to the machines hosted here, for whoever shares them (the cluster's
//! publisher). Only the newest record of each machine is kept until it is taken, so a
//! burst of transitions becomes one write and the pending set never holds more than one
//! entry per machine.

use super::record::MachineRecord;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// What became of one machine since it was last taken.
#[derive(Debug, Clone)]
pub enum Change {
    /// Its record now (a destroyed machine's record says `destroyed`).
    Record {
        app: String,
        record: Box<MachineRecord>,
    },
    /// Forgotten for good (a destroyed record that fell out of `include_deleted`).
    Forgotten,
}

/// Pending changes by machine id, and a signal that there are some.
#[derive(Debug, Default)]
pub struct Changes {
    pending: Mutex<HashMap<String, Change>>,
    notify: Notify,
}

impl Changes {
    pub fn record(&self, app: &str, record: &MachineRecord) {
        let change = Change::Record {
            app: app.to_string(),
            record: Box::new(record.clone()),
        };
        self.note(record.id.clone(), change);
    }

    pub fn forgotten(&self, id: &str) {
        self.note(id.to_string(), Change::Forgotten);
    }

    fn note(&self, id: String, change: Change) {
        self.lock().insert(id, change);
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Change>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every pending change now.
    pub fn take(&self) -> HashMap<String, Change> {
        std::mem::take(&mut *self.lock())
    }

    /// Waits until there are changes, then takes them all.
    pub async fn next(&self) -> HashMap<String, Change> {
        loop {
            let taken = self.take();
            if !taken.is_empty() {
                return taken;
            }
            self.notify.notified().await;
        }
    }

    /// Puts back changes that could not be shared, unless newer ones came meanwhile.
    pub fn retry(&self, changes: HashMap<String, Change>) {
        let mut pending = self.lock();
        for (id, change) in changes {
            pending.entry(id).or_insert(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several changes to one machine are taken as its newest; a retried old change
    /// never overwrites a newer one.
    #[tokio::test]
    async fn newest_change_wins() {
        let changes = Changes::default();
        changes.forgotten("a");
        changes.forgotten("b");
        let taken = changes.next().await;
        assert_eq!(taken.len(), 2);
        changes.forgotten("a");
        changes.retry(taken);
        assert_eq!(changes.next().await.len(), 2);
    }
}
