//! The cluster's shared state: three JetStream KV buckets, made if absent, replicated
//! over up to three servers, one value per key (history 1). Only stream fields NATS
//! 2.9 knows are sent (async-nats is built without its `server_2_10` feature).
//!
//! - `edgewake-apps`: app name → its record; claimed with create-if-absent.
//! - `edgewake-machines`: machine id → its record, app and hosting node; written only
//!   by that node.
//! - `edgewake-nodes`: node name → its heartbeat (`NodeFacts`).

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

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_string(),
        history: 1,
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node made it in between.
        Err(error) => js
            .get_key_value(name)
            .await
            .map_err(|_| ClusterError::kv("create bucket", error)),
    }
}
