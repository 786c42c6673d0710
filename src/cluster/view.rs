//! The node's view of the cluster, fed by one watch per bucket: apps and machines other
//! nodes created go into the `Registry` (where the request path reads them without a
//! network call), and each node's heartbeat says whether it is up. Every watch starts
//! from each key's latest value, so a node that starts late, or reconnects, sees all.
//!
//! A node is down when its heartbeats stopped while this node's own kept coming back
//! through the watch for longer than `heartbeat_timeout`: silence is judged against
//! this node's own heartbeats, not the clock. Cut off from NATS, or while NATS elects
//! new leaders, this node hears nothing, its own heartbeats included, and the view
//! stays as it last was (the others are likely fine; it is this node that cannot hear
//! them). When it hears again, every node gets a fresh timeout to be heard too.

use super::kv::MachineEntry;
use super::{Cluster, RETRY_DELAY};
use crate::lifecycle::Supervisor;
use crate::machines::MachineState;
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

/// The key filter for every key of a bucket.
const ALL_KEYS: &str = ">";
/// How often a watch is compared with its bucket's last revision.
const WATCH_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long starting a watch may take before it is tried again.
const WATCH_START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often heartbeats are judged.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Most machine records kept waiting for their app: past it a record is dropped (its
/// host publishes it again on its next reconnection), so what peers publish cannot
/// grow this node's memory without end.
pub const MAX_UNPLACED: usize = 10_000;

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
    /// When each node's last heartbeat was sent (this node's own too), on this
    /// node's clock.
    seen: Mutex<HashMap<String, Instant>>,
}

/// Whether the bucket holds revisions past `applied` (unknown counts as not behind:
/// a bucket that cannot answer cannot be caught up with either).
async fn falls_behind(store: &Store, applied: u64) -> bool {
    let status = tokio::time::timeout(super::KV_TIMEOUT, store.status()).await;
    matches!(status, Ok(Ok(status)) if status.info.state.last_sequence > applied)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl View {
    pub fn new(cluster: Arc<Cluster>, supervisor: Arc<Supervisor>) -> Arc<View> {
        Arc::new(View {
            cluster,
            supervisor,
            unplaced: Mutex::default(),
            seen: Mutex::default(),
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

    /// Applies every entry of `store`, watching again after an error, a reconnection,
    /// or when the watch has fallen behind the bucket (a consumer NATS lost while it
    /// elected new leaders can stay silent without an error).
    async fn watch(&self, store: &Store, bucket: Bucket, cancel: &CancellationToken) {
        let mut connections = self.cluster.connections.clone();
        loop {
            connections.borrow_and_update();
            let mut applied = 0;
            let mut behind = false;
            let mut checks = tokio::time::interval(WATCH_CHECK_INTERVAL);
            checks.reset();
            // With history: every key's latest value first, then each change
            // (`watch_all` would give only changes made after it began).
            let watch =
                tokio::time::timeout(WATCH_START_TIMEOUT, store.watch_with_history(ALL_KEYS));
            match watch.await {
                Ok(Ok(mut entries)) => loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        _ = connections.changed() => break,
                        _ = checks.tick() => {
                            // Behind at two checks in a row: the watch is stuck.
                            let now_behind = falls_behind(store, applied).await;
                            if behind && now_behind {
                                tracing::debug!("watch of {bucket:?} fell behind");
                                break;
                            }
                            behind = now_behind;
                        }
                        entry = entries.next() => match entry {
                            Some(Ok(entry)) => {
                                applied = applied.max(entry.revision);
                                self.apply(bucket, entry);
                            }
                            Some(Err(e)) => {
                                tracing::debug!("watch of {bucket:?} ended: {e}");
                                break;
                            }
                            None => break,
                        },
                    }
                },
                Ok(Err(e)) => tracing::debug!("cannot watch {bucket:?} yet: {e}"),
                Err(_) => tracing::debug!("cannot watch {bucket:?} yet: timed out"),
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
            (Bucket::Machines, true) => self.machine_changed(&entry),
            (Bucket::Nodes, true) => self.heartbeat(&entry),
            (Bucket::Apps, false) => {
                self.app_deleted(&entry.key);
                Ok(())
            }
            (Bucket::Machines, false) => {
                self.machine_forgotten(&entry.key);
                Ok(())
            }
            (Bucket::Nodes, false) => {
                self.node_left(&entry.key);
                Ok(())
            }
        };
        if let Err(e) = applied {
            tracing::warn!(key = %entry.key, "unreadable entry in {bucket:?}: {e}");
        }
    }

    fn app_created(&self, entry: &Entry) -> Result<(), serde_json::Error> {
        self.app_arrived(serde_json::from_slice(&entry.value)?);
        Ok(())
    }

    /// An app created anywhere: this node keeps it and places the machines that waited
    /// for it.
    fn app_arrived(&self, record: AppRecord) {
        let name = record.name.clone();
        if let Err(e) = self.cluster.registry.learn_app(record) {
            tracing::error!(app = %name, "cannot keep the app: {e}");
        }
        let waiting = lock(&self.unplaced).remove(&name).unwrap_or_default();
        for machine in waiting {
            self.place(machine);
        }
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
        let unplaced = registry
            .learn_machine(&machine.app, machine.record.clone(), &node)
            .is_err();
        if !unplaced {
            return;
        }
        let mut unplaced = lock(&self.unplaced);
        // A newer record replaces the one waiting, bound or not; a destroyed machine
        // of an unknown app (deleted, most likely) waits no more.
        if let Some(waiting) = unplaced.get_mut(&machine.app) {
            waiting.retain(|m| m.record.id != machine.record.id);
        }
        if machine.record.state == MachineState::Destroyed {
            return;
        }
        if unplaced.values().map(Vec::len).sum::<usize>() >= MAX_UNPLACED {
            let id = &machine.record.id;
            return tracing::warn!(machine = %id, app = %machine.app, "too many machines wait for their app: dropped");
        }
        unplaced
            .entry(machine.app.clone())
            .or_default()
            .push(machine);
    }

    fn machine_forgotten(&self, id: &str) {
        for waiting in lock(&self.unplaced).values_mut() {
            waiting.retain(|m| m.record.id != id);
        }
        self.cluster.registry.forget_remote(id);
    }

    fn heartbeat(&self, entry: &Entry) -> Result<(), serde_json::Error> {
        let facts: NodeFacts = serde_json::from_slice(&entry.value)?;
        // A heartbeat replayed from before this node watched is as old as it says.
        let timeout = self.cluster.heartbeat_timeout;
        let age = Duration::from_millis(now_millis().saturating_sub(facts.heartbeat_ms));
        let sent = Instant::now()
            .checked_sub(age.min(timeout * 2))
            .unwrap_or_else(Instant::now);
        if entry.key == self.cluster.node {
            self.heard_self(sent);
            return Ok(());
        }
        let node = self.cluster.registry.node(&entry.key);
        *node.facts() = Some(facts);
        lock(&self.seen).insert(entry.key.clone(), sent);
        if !node.is_up() && age < timeout {
            tracing::info!(node = %node.name, "node is up");
            node.set_up(true);
        }
        Ok(())
    }

    /// This node's own heartbeat came back. After a silence longer than the timeout
    /// (this node was cut off), every node's silence counts from now.
    fn heard_self(&self, sent: Instant) {
        let mut seen = lock(&self.seen);
        let own = seen.insert(self.cluster.node.clone(), sent);
        let deaf = own
            .is_none_or(|own| sent.saturating_duration_since(own) > self.cluster.heartbeat_timeout);
        if deaf {
            for last in seen.values_mut() {
                *last = (*last).max(sent);
            }
        }
    }

    /// A node that left cleanly took its heartbeat with it: it is down at once.
    fn node_left(&self, name: &str) {
        lock(&self.seen).remove(name);
        if name != self.cluster.node {
            tracing::info!(node = %name, "node left the cluster");
            self.cluster.registry.node(name).set_up(false);
        }
    }

    /// Marks nodes down whose heartbeats stopped while this node's went on.
    async fn judge_heartbeats(&self, cancel: &CancellationToken) {
        let mut tick = tokio::time::interval(HEALTH_CHECK_INTERVAL);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let seen = lock(&self.seen).clone();
            let Some(own) = seen.get(&self.cluster.node) else {
                continue;
            };
            for node in self.cluster.registry.nodes() {
                let silent = seen.get(&node.name).is_some_and(|last| {
                    own.saturating_duration_since(*last) > self.cluster.heartbeat_timeout
                });
                if node.is_up() && silent {
                    tracing::warn!(node = %node.name, "no heartbeat: node is down");
                    node.set_up(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
