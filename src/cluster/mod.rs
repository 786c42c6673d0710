//! Several edges, one cluster. Each node runs in one region and hosts the machines
//! placed there; apps, machines and nodes are shared on NATS JetStream KV (`kv`). Every
//! node keeps a full view in its `Registry`, fed by watches (`view`), so the request
//! path never waits on the network for state; each machine has one writer, its hosting
//! node (`publish`), and app names are claimed with create-if-absent. Requests for a
//! machine elsewhere go to its node over the authenticated `backhaul`.
//!
//! Without `[cluster]` none of this runs.

pub mod backhaul;
mod kv;
mod publish;
pub mod status;
mod view;

pub use backhaul::{BackhaulError, BackhaulKey, Relayed};

use crate::config::ClusterConfig;
use crate::lifecycle::Supervisor;
use crate::machines::Registry;
use crate::machines::nodes::{Node, NodeFacts};
use crate::machines::store::AppRecord;
use async_nats::connection::State;
use kv::Buckets;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often this node says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one request to the shared state may take before it counts as failed.
pub const KV_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between two attempts to reach NATS again, so a returning cluster is
/// seen within a second.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a node waits before trying a failed shared-state step again.
pub const RETRY_DELAY: Duration = Duration::from_millis(250);
/// How long a leaving node may take to publish its last changes.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the cluster could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "the cluster's shared state (NATS) is unreachable: changes are refused until it is back"
    )]
    Unreachable,
    #[error("app `{0}` already exists in the cluster")]
    AppTaken(String),
    #[error("no node of region `{0}` is up; try again later")]
    RegionDown(String),
    #[error("the cluster's shared state failed to {what}: {source}")]
    Kv {
        what: &'static str,
        source: async_nats::Error,
    },
    #[error(
        "the cluster secret: environment variable `{0}` must hold at least {min} bytes",
        min = backhaul::MIN_SECRET_BYTES
    )]
    Secret(String),
    #[error("cannot reach the NATS servers: {0}")]
    Connect(#[source] async_nats::ConnectError),
}

impl ClusterError {
    fn kv(what: &'static str, error: impl Into<async_nats::Error>) -> ClusterError {
        ClusterError::Kv {
            what,
            source: error.into(),
        }
    }
}

/// Where other nodes reach this one.
#[derive(Debug, Clone, Copy)]
pub struct Advertised {
    pub backhaul: SocketAddr,
    pub api: SocketAddr,
}

/// This node's membership: its NATS connection, the buckets once open, and what it
/// tells the others.
pub struct Cluster {
    pub node: String,
    pub region: String,
    pub advertised: Advertised,
    pub heartbeat_timeout: Duration,
    client: async_nats::Client,
    servers: usize,
    buckets: OnceLock<Buckets>,
    /// Bumped on every (re)connection to NATS: watches start again and this node's
    /// machines are published again.
    connections: watch::Receiver<u64>,
    registry: Arc<Registry>,
    tasks: TaskTracker,
}

impl Cluster {
    /// Begins to reach NATS (in the background: a node starts, and routes from SQLite,
    /// even while NATS is down).
    pub async fn join(
        config: &ClusterConfig,
        region: &str,
        advertised: Advertised,
        registry: Arc<Registry>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let (connected, connections) = watch::channel(0u64);
        let options = async_nats::ConnectOptions::new()
            .name(format!("edgewake {}", config.node))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                (RETRY_DELAY * attempts as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    connected.send_modify(|n| *n += 1);
                }
                tracing::info!("NATS: {event}");
                async {}
            });
        let client = options
            .connect(servers(config).as_slice())
            .await
            .map_err(ClusterError::Connect)?;
        Ok(Arc::new(Cluster {
            node: config.node.clone(),
            region: region.to_string(),
            advertised,
            heartbeat_timeout: config.heartbeat_timeout,
            client,
            servers: config.nats.len(),
            buckets: OnceLock::new(),
            connections,
            registry,
            tasks: TaskTracker::new(),
        }))
    }

    /// Opens the buckets, then follows the shared state and publishes this node's
    /// part of it until `cancel`.
    pub fn run(self: &Arc<Self>, supervisor: Arc<Supervisor>, cancel: CancellationToken) {
        let changes = self.registry.share_changes();
        let this = self.clone();
        self.tasks.spawn(async move {
            if !this.open_buckets(&cancel).await {
                return;
            }
            let view = view::View::new(this.clone(), supervisor);
            tokio::join!(
                view.follow(cancel.clone()),
                publish::changes(&this, &changes, cancel.clone()),
                publish::heartbeats(&this, cancel.clone()),
                publish::again_on_reconnect(&this, cancel.clone()),
            );
        });
    }

    async fn open_buckets(&self, cancel: &CancellationToken) -> bool {
        let mut js = async_nats::jetstream::new(self.client.clone());
        js.set_timeout(KV_TIMEOUT);
        loop {
            match Buckets::open(&js, self.servers).await {
                Ok(buckets) => {
                    let _ = self.buckets.set(buckets);
                    return true;
                }
                Err(e) => tracing::warn!("cluster buckets not open yet: {e}"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }

    /// Another bucket of shared state beside apps, machines and nodes, opened or made
    /// with the same replication: the hook for what else the cluster shares (the
    /// certificates, for one). Fails while NATS is unreachable.
    pub async fn bucket(
        &self,
        name: &str,
    ) -> Result<async_nats::jetstream::kv::Store, ClusterError> {
        self.buckets()?;
        let mut js = async_nats::jetstream::new(self.client.clone());
        js.set_timeout(KV_TIMEOUT);
        let replicas = self.servers.clamp(1, kv::MAX_REPLICAS);
        kv::bucket(&js, name, replicas).await
    }

    /// Publishes what is still pending and withdraws this node's heartbeat, so the
    /// others stop sending it requests at once; bounded by `LEAVE_TIMEOUT`.
    pub async fn leave(&self) {
        self.tasks.close();
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, async {
            self.tasks.wait().await;
            let changes = self.registry.share_changes();
            publish::pending(self, &changes).await;
            if let Some(buckets) = self.buckets.get() {
                let _ = buckets.nodes.delete(&self.node).await;
            }
        })
        .await;
    }

    fn buckets(&self) -> Result<&Buckets, ClusterError> {
        match (self.buckets.get(), self.client.connection_state()) {
            (Some(buckets), State::Connected) => Ok(buckets),
            _ => Err(ClusterError::Unreachable),
        }
    }

    /// Whether changes can be shared now (the API refuses writes otherwise).
    pub fn writable(&self) -> Result<(), ClusterError> {
        self.buckets().map(|_| ())
    }

    /// Claims an app name for the whole cluster (create-if-absent).
    pub async fn claim_app(&self, record: &AppRecord) -> Result<(), ClusterError> {
        let buckets = self.buckets()?;
        let value = serde_json::to_vec(record).expect("an app record serializes");
        match buckets.apps.create(&record.name, value.into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Err(ClusterError::AppTaken(record.name.clone()))
            }
            Err(e) => Err(ClusterError::kv("claim the app name", e)),
        }
    }

    /// Gives an app name back: every node drops the app and destroys its machines.
    pub async fn release_app(&self, name: &str) -> Result<(), ClusterError> {
        let buckets = self.buckets()?;
        buckets
            .apps
            .delete(name)
            .await
            .map_err(|e| ClusterError::kv("delete the app", e))
    }

    /// The node that should create a machine in `region`: `None` for this one (its own
    /// region, or a region no node has announced), else an up node of that region.
    pub fn host_for_region(&self, region: &str) -> Result<Option<Arc<Node>>, ClusterError> {
        if region == self.region {
            return Ok(None);
        }
        let nodes = self.registry.nodes();
        let in_region: Vec<_> = nodes
            .iter()
            .filter(|n| n.region().as_deref() == Some(region))
            .collect();
        match in_region.iter().find(|n| n.is_up()) {
            Some(node) => Ok(Some((*node).clone())),
            None if in_region.is_empty() => Ok(None),
            None => Err(ClusterError::RegionDown(region.to_string())),
        }
    }

    /// This node's facts, as its heartbeat says them.
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            region: self.region.clone(),
            backhaul: self.advertised.backhaul,
            api: self.advertised.api,
            heartbeat_ms: crate::machines::record::now_millis(),
            machines: self.registry.local_machines().len(),
        }
    }
}

/// The NATS servers of the config (checked when it was read).
fn servers(config: &ClusterConfig) -> Vec<async_nats::ServerAddr> {
    config.nats.iter().filter_map(|s| s.parse().ok()).collect()
}

/// The cluster secret from the variable the config names.
pub fn secret_from_env(variable: &str) -> Result<Vec<u8>, ClusterError> {
    std::env::var(variable)
        .ok()
        .map(String::into_bytes)
        .filter(|s| s.len() >= backhaul::MIN_SECRET_BYTES)
        .ok_or_else(|| ClusterError::Secret(variable.to_string()))
}
