//! A node's part in a cluster, when `[cluster]` is set: joining it (the NATS
//! connection, the backhaul key, the addresses other nodes reach it at) and serving
//! the backhaul listener, with a connection limit of its own.

use super::{Live, StartError, live};
use crate::cluster::{self, Advertised, BackhaulKey, Cluster};
use crate::config::Config;
use crate::edge::{self, Edge, Workers};
use crate::machines::Registry;
use crate::proxy::Inbound;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Requests other edges relay here, signed.
const BACKHAUL_INBOUND: Inbound = Inbound {
    service_port: 0,
    scheme: "http",
    proxy_protocol: false,
    backhaul: true,
};

/// This node's membership of the cluster and the backhaul key, when `[cluster]` is set.
pub(super) async fn join(
    config: &Config,
    registry: &Arc<Registry>,
    backhaul: Option<SocketAddr>,
    api: SocketAddr,
) -> Result<Option<(Arc<Cluster>, Arc<BackhaulKey>)>, StartError> {
    let (Some(settings), Some(backhaul)) = (&config.cluster, backhaul) else {
        return Ok(None);
    };
    let key = BackhaulKey::new(&cluster::secret_from_env(&settings.secret_env)?);
    let ip = settings.advertised_ip();
    let advertised = Advertised {
        backhaul: SocketAddr::new(ip, backhaul.port()),
        api: SocketAddr::new(ip, api.port()),
    };
    let region = &config.edge.region;
    let joined = Cluster::join(settings, region, advertised, registry.clone()).await?;
    tracing::info!(node = %settings.node, %region, "joining the cluster");
    Ok(Some((joined, Arc::new(key))))
}

/// The backhaul listener's own edge (none without `[cluster]`): its connections are
/// counted apart from the public ones, so a flood on either listener cannot take the
/// other's slots.
pub(super) struct Backhaul {
    served: Option<(TcpListener, Arc<Edge>)>,
    connections: TaskTracker,
}

impl Backhaul {
    pub(super) fn new(
        listener: Option<TcpListener>,
        config: &Config,
        live: &Live,
        cancel: &CancellationToken,
    ) -> Backhaul {
        let served = listener
            .zip(config.cluster.as_ref())
            .map(|(listener, settings)| {
                let edge = Arc::new(Edge::new(
                    live.proxy.clone(),
                    settings.max_backhaul_connections,
                    cancel.clone(),
                    live::edge_settings(config),
                    // Relayed requests stay on the main runtime: few, and signed.
                    Workers::default(),
                ));
                (listener, edge)
            });
        let connections = served
            .as_ref()
            .map_or_else(TaskTracker::new, |(_, edge)| edge.connections.clone());
        Backhaul {
            served,
            connections,
        }
    }

    /// Its connections, to drain at shutdown (none without a backhaul).
    pub(super) fn connections(&self) -> TaskTracker {
        self.connections.clone()
    }

    /// Accepts until cancelled.
    pub(super) async fn serve(self) {
        if let Some((listener, edge)) = self.served {
            edge::serve(listener, edge, BACKHAUL_INBOUND, None).await;
        }
    }
}
