//! The node's view of the cluster, fed by one watch per bucket: apps and machines other
//! nodes created go into the `Registry` (where the request path reads them without a
//! network call), and each node's heartbeat says whether it is up. Every watch starts
//! from each key's latest value, so a node that starts late, or reconnects, sees all.
//!
//! A node is down when no heartbeat has come for `heartbeat_timeout`. That is judged
//! only while this node itself reaches NATS: cut off from it, the view stays as it last
//! was (the others are likely fine; it is this node that cannot hear them).

use super::kv::MachineEntry;
use super::{Cluster, RETRY_DELAY};
use crate::lifecycle::Supervisor;
use crate::machines::nodes::NodeFacts;
use crate::machines::record::now_millis;
use crate::machines::store::AppRecord;
use async_nats::jetstream::kv::{Entry, Operation, Store};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often heartbeats are judged.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
enum Bucket {
    Apps,
    Machines,
    Nodes,
}

pub(super) struct View {
    cluster: Arc<Cluster>,
    supervisor: Arc<Supervisor>,
    /// Machines whose app has not arrived yet (the buckets are watched apart), by app.
    unplaced: Mutex<HashMap<String, Vec<MachineEntry>>>,
    /// When each node's last heartbeat was sent, on this node's clock.
    seen: Mutex<HashMap<String, Instant>>,
    /// No node is judged down before this: heartbeats need a moment to arrive after
    /// a (re)connection.
    judge_after: Mutex<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl View {
    pub fn new(cluster: Arc<Cluster>, supervisor: Arc<Supervisor>) -> Arc<View> {
        let judge_after = Instant::now() + cluster.heartbeat_timeout;
        Arc::new(View {
            cluster,
            supervisor,
            unplaced: Mutex::default(),
            seen: Mutex::default(),
            judge_after: Mutex::new(judge_after),
        })
    }

    /// Follows the three buckets and judges heartbeats until `cancel`.
    pub async fn follow(self: &Arc<Self>, cancel: CancellationToken) {
        let Some(buckets) = self.cluster.buckets.get() else {
            return;
        };
        tokio::join!(
            self.watch(&buckets.apps, Bucket::Apps, &cancel),
            self.watch(&buckets.machines, Bucket::Machines, &cancel),
            self.watch(&buckets.nodes, Bucket::Nodes, &cancel),
            self.judge_heartbeats(&cancel),
        );
    }

    /// Applies every entry of `store`, watching again after an error or a reconnection.
    async fn watch(&self, store: &Store, bucket: Bucket, cancel: &CancellationToken) {
        let mut connections = self.cluster.connections.clone();
        loop {
            connections.borrow_and_update();
            match store.watch_all().await {
                Ok(mut entries) => loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        _ = connections.changed() => {
                            *lock(&self.judge_after) = Instant::now() + self.cluster.heartbeat_timeout;
                            break;
                        }
                        entry = entries.next() => match entry {
                            Some(Ok(entry)) => self.apply(bucket, entry),
                            Some(Err(e)) => {
                                tracing::debug!("watch of {bucket:?} ended: {e}");
                                break;
                            }
                            None => break,
                        },
                    }
                },
                Err(e) => tracing::debug!("cannot watch {bucket:?} yet: {e}"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }

    fn apply(&self, bucket: Bucket, entry: Entry) {
        let put = entry.operation == Operation::Put;
        let applied = match (bucket, put) {
            (Bucket::Apps, true) => self.app_created(&entry),
            (Bucket::Apps, false) => Ok(self.app_deleted(&entry.key)),
            (Bucket::Machines, true) => self.machine_changed(&entry),
            (Bucket::Machines, false) => Ok(self.machine_forgotten(&entry.key)),
            (Bucket::Nodes, true) => self.heartbeat(&entry),
            (Bucket::Nodes, false) => Ok(self.node_left(&entry.key)),
        };
        if let Err(e) = applied {
            tracing::warn!(key = %entry.key, "unreadable entry in {bucket:?}: {e}");
        }
    }

    fn app_created(&self, entry: &Entry) -> Result<(), serde_json::Error> {
        let record: AppRecord = serde_json::from_slice(&entry.value)?;
        let name = record.name.clone();
        if let Err(e) = self.cluster.registry.learn_app(record) {
            tracing::error!(app = %name, "cannot keep the app: {e}");
        }
        let waiting = lock(&self.unplaced).remove(&name).unwrap_or_default();
        for machine in waiting {
            self.place(machine);
        }
        Ok(())
    }

    /// An app deleted anywhere: this node drops it and destroys the machines it hosts.
    fn app_deleted(&self, name: &str) {
        lock(&self.unplaced).remove(name);
        if let Some(app) = self.cluster.registry.remove_app(name) {
            tracing::info!(app = %name, "app deleted in the cluster");
            let supervisor = self.supervisor.clone();
            tokio::spawn(async move { supervisor.destroy_app(app).await });
        }
    }

    fn machine_changed(&self, entry: &Entry) -> Result<(), serde_json::Error> {
        let machine: MachineEntry = serde_json::from_slice(&entry.value)?;
        // Records of machines hosted here are this node's to write, never to take.
        if machine.node != self.cluster.node {
            self.place(machine);
        }
        Ok(())
    }

    fn place(&self, machine: MachineEntry) {
        let node = self.cluster.registry.node(&machine.node);
        let registry = &self.cluster.registry;
        if registry
            .learn_machine(&machine.app, machine.record.clone(), &node)
            .is_err()
        {
            let mut unplaced = lock(&self.unplaced);
            let waiting = unplaced.entry(machine.app.clone()).or_default();
            waiting.retain(|m| m.record.id != machine.record.id);
            waiting.push(machine);
        }
    }

    fn machine_forgotten(&self, id: &str) {
        for waiting in lock(&self.unplaced).values_mut() {
            waiting.retain(|m| m.record.id != id);
        }
        self.cluster.registry.forget_remote(id);
    }

    fn heartbeat(&self, entry: &Entry) -> Result<(), serde_json::Error> {
        if entry.key == self.cluster.node {
            return Ok(());
        }
        let facts: NodeFacts = serde_json::from_slice(&entry.value)?;
        // A heartbeat replayed from before this node watched is as old as it says.
        let age = Duration::from_millis(now_millis().saturating_sub(facts.heartbeat_ms));
        let age = age.min(self.cluster.heartbeat_timeout * 2);
        let sent = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let node = self.cluster.registry.node(&entry.key);
        *node.facts() = Some(facts);
        lock(&self.seen).insert(entry.key.clone(), sent);
        if !node.is_up() && age < self.cluster.heartbeat_timeout {
            tracing::info!(node = %node.name, "node is up");
            node.set_up(true);
        }
        Ok(())
    }

    /// A node that left cleanly took its heartbeat with it: it is down at once.
    fn node_left(&self, name: &str) {
        lock(&self.seen).remove(name);
        if name != self.cluster.node {
            tracing::info!(node = %name, "node left the cluster");
            self.cluster.registry.node(name).set_up(false);
        }
    }

    /// Marks nodes down whose heartbeats stopped, while this node can hear them.
    async fn judge_heartbeats(&self, cancel: &CancellationToken) {
        let mut tick = tokio::time::interval(HEALTH_CHECK_INTERVAL);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.cluster.writable().is_err() || Instant::now() < *lock(&self.judge_after) {
                continue;
            }
            let seen = lock(&self.seen).clone();
            for node in self.cluster.registry.nodes() {
                let fresh = seen
                    .get(&node.name)
                    .is_some_and(|at| at.elapsed() < self.cluster.heartbeat_timeout);
                if node.is_up() && !fresh {
                    tracing::warn!(node = %node.name, "no heartbeat: node is down");
                    node.set_up(false);
                }
            }
        }
    }
}
