//! The cluster's shared state: three JetStream KV buckets, made if absent, replicated
//! over up to three servers, one value per key (history 1). Only stream fields NATS
//! 2.9 knows are sent (async-nats is built without its `server_2_10` feature), and the
//! bucket's stream is made directly: async-nats's `create_key_value` first reads the
//! account's info, whose answer from a 2.9 server it cannot parse.
//!
//! - `edgewake-apps`: app name → its record; claimed with create-if-absent.
//! - `edgewake-machines`: machine id → its record, app and hosting node; written only
//!   by that node.
//! - `edgewake-nodes`: node name → its heartbeat (`NodeFacts`).
//!
//! More shared state (certificates, for one) gets a bucket of its own the same way:
//! `Cluster::bucket` opens or makes it with the same replication.

use super::ClusterError;
use crate::machines::MachineRecord;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

pub const APPS_BUCKET: &str = "edgewake-apps";
pub const MACHINES_BUCKET: &str = "edgewake-machines";
pub const NODES_BUCKET: &str = "edgewake-nodes";
/// Most copies of each bucket (R3, as a 3-server cluster has).
pub const MAX_REPLICAS: usize = 3;

/// A machine as the machines bucket holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MachineEntry {
    pub app: String,
    /// The node that hosts it: the only one that writes this entry.
    pub node: String,
    pub record: MachineRecord,
}

/// The three buckets.
#[derive(Clone)]
pub struct Buckets {
    pub apps: kv::Store,
    pub machines: kv::Store,
    pub nodes: kv::Store,
}

impl Buckets {
    /// Opens the buckets, making those that do not exist yet.
    pub async fn open(js: &jetstream::Context, servers: usize) -> Result<Buckets, ClusterError> {
        let replicas = servers.clamp(1, MAX_REPLICAS);
        Ok(Buckets {
            apps: bucket(js, APPS_BUCKET, replicas).await?,
            machines: bucket(js, MACHINES_BUCKET, replicas).await?,
            nodes: bucket(js, NODES_BUCKET, replicas).await?,
        })
    }
}

pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // What `create_key_value` would make: one subject space per bucket, a rollup-able
    // stream keeping `history` values per key, direct gets for fast reads.
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        max_message_size: -1,
        max_bytes: -1,
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => js
            .get_key_value(name)
            .await
            .map_err(|e| ClusterError::kv("open bucket", e)),
        // Another node made it in between.
        Err(error) => js
            .get_key_value(name)
            .await
            .map_err(|_| ClusterError::kv("create bucket", error)),
    }
}
