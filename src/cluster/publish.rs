//! This node's part of the shared state: the record of each machine it hosts, put on
//! every change (it is their only writer), and a heartbeat every second. Changes made
//! while NATS is unreachable wait, newest first; on every (re)connection each machine
//! hosted here is published again, so the cluster converges on what this node knows.

use super::kv::MachineEntry;
use super::{Cluster, HEARTBEAT_INTERVAL, RETRY_DELAY};
use crate::machines::changes::{Change, Changes};
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// Puts every change as it comes, until `cancel`.
pub(super) async fn changes(cluster: &Cluster, changes: &Changes, cancel: CancellationToken) {
    loop {
        let batch = tokio::select! {
            () = cancel.cancelled() => return,
            batch = changes.next() => batch,
        };
        if let Err(unsent) = put_all(cluster, batch).await {
            changes.retry(unsent);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
}

/// Publishes whatever is pending now, once (a leaving node's last word).
pub(super) async fn pending(cluster: &Cluster, changes: &Changes) {
    let batch = changes.take();
    if batch.is_empty() {
        return;
    }
    if let Err(unsent) = put_all(cluster, batch).await {
        tracing::warn!("{} machine changes not shared before leaving", unsent.len());
    }
}

/// Puts each change; gives back those not written when one fails.
async fn put_all(
    cluster: &Cluster,
    mut batch: HashMap<String, Change>,
) -> Result<(), HashMap<String, Change>> {
    let Ok(buckets) = cluster.buckets() else {
        return Err(batch);
    };
    let ids: Vec<String> = batch.keys().cloned().collect();
    for id in ids {
        let Some(change) = batch.remove(&id) else {
            continue;
        };
        let written = match &change {
            Change::Record { app, record } => {
                let entry = MachineEntry {
                    app: app.clone(),
                    node: cluster.node.clone(),
                    record: (**record).clone(),
                };
                let value = serde_json::to_vec(&entry).expect("a machine entry serializes");
                buckets
                    .machines
                    .put(&id, value.into())
                    .await
                    .map(|_| ())
                    .map_err(async_nats::Error::from)
            }
            Change::Forgotten => buckets.machines.delete(&id).await.map_err(Into::into),
        };
        if let Err(e) = written {
            tracing::warn!(machine = %id, "cannot share the machine's change yet: {e}");
            batch.insert(id, change);
            return Err(batch);
        }
    }
    Ok(())
}

/// Says every `HEARTBEAT_INTERVAL` that this node is alive, where it is reached, and
/// how many machines it hosts.
pub(super) async fn heartbeats(cluster: &Cluster, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(buckets) = cluster.buckets() else {
            continue;
        };
        let facts = serde_json::to_vec(&cluster.facts()).expect("node facts serialize");
        if let Err(e) = buckets.nodes.put(&cluster.node, facts.into()).await {
            tracing::debug!("heartbeat not sent: {e}");
        }
    }
}

/// On every (re)connection, publishes each machine hosted here again: whatever the
/// cluster lost or missed meanwhile, this node's SQLite still knows.
pub(super) async fn again_on_reconnect(cluster: &Cluster, cancel: CancellationToken) {
    let mut connections = cluster.connections.clone();
    connections.mark_changed(); // the first connection counts too
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = connections.changed() => if changed.is_err() { return },
        }
        cluster.registry.republish();
    }
}
