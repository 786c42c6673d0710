//! `edgewake cluster status`: every node that has sent a heartbeat, read straight from
//! the shared state (so it works from any host that reaches NATS, even with every node
//! down), with whether its last heartbeat is fresh.

use super::kv::NODES_BUCKET;
use super::{ClusterError, KV_TIMEOUT, servers};
use crate::config::ClusterConfig;
use crate::machines::nodes::NodeFacts;
use crate::machines::record::now_millis;
use futures_util::TryStreamExt;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One node as `edgewake cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub region: String,
    pub backhaul: SocketAddr,
    pub api: SocketAddr,
    /// When its last heartbeat was sent (RFC 3339, its clock).
    pub last_heartbeat: String,
    /// Milliseconds since then (on this host's clock).
    pub heartbeat_age_ms: u64,
    /// Whether that is within the heartbeat timeout.
    pub up: bool,
    pub machines: usize,
}

/// Reads every node's last heartbeat, by name.
pub async fn read(config: &ClusterConfig) -> Result<Vec<NodeStatus>, ClusterError> {
    let client = async_nats::ConnectOptions::new()
        .name("edgewake cluster status")
        .connection_timeout(KV_TIMEOUT)
        .connect(servers(config).as_slice())
        .await
        .map_err(ClusterError::Connect)?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(KV_TIMEOUT);
    let nodes = js
        .get_key_value(NODES_BUCKET)
        .await
        .map_err(|e| ClusterError::kv("open the nodes bucket", e))?;
    let names: Vec<String> = match nodes.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| ClusterError::kv("list the nodes", e))?,
        Err(e) => return Err(ClusterError::kv("list the nodes", e)),
    };
    let mut all = Vec::new();
    for name in names {
        let value = nodes
            .get(&name)
            .await
            .map_err(|e| ClusterError::kv("read a heartbeat", e))?;
        let Some(facts) = value.and_then(|v| serde_json::from_slice::<NodeFacts>(&v).ok()) else {
            continue;
        };
        all.push(status(name, facts, config.heartbeat_timeout));
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

fn status(name: String, facts: NodeFacts, timeout: Duration) -> NodeStatus {
    let age = now_millis().saturating_sub(facts.heartbeat_ms);
    let sent = std::time::UNIX_EPOCH + Duration::from_millis(facts.heartbeat_ms);
    NodeStatus {
        name,
        region: facts.region,
        backhaul: facts.backhaul,
        api: facts.api,
        last_heartbeat: humantime::format_rfc3339_millis(sent).to_string(),
        heartbeat_age_ms: age,
        up: u128::from(age) < timeout.as_millis(),
        machines: facts.machines,
    }
}
