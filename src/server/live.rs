//! What a reload reaches: the parts that read settings a reload may change, each built
//! from a config the same way at start and at every reload.

use crate::api::RegionList;
use crate::cluster::BackhaulKey;
use crate::config::Config;
use crate::connection::{ClientPolicy, MachinePolicy, UpstreamLimits};
use crate::edge::{Edge, EdgeSettings, Workers};
use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::lifecycle::{Settings, Supervisor};
use crate::listener::Shares;
use crate::proxy::asleep::Sleeping;
use crate::proxy::place::Regions;
use crate::proxy::wake_page;
use crate::proxy::{Proxy, ProxySettings};
use crate::tls::Tls;
use crate::trusted::Trusted;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(super) fn settings(config: &Config) -> Settings {
    Settings {
        idle_timeout: config.edge.idle_timeout,
        reap_interval: config.edge.reap_interval,
        wake_timeout: config.edge.wake_timeout,
        probe_interval: config.edge.probe_interval,
        stop_signal: config.machines.stop_signal,
        stop_timeout: config.machines.stop_timeout,
        queue_timeout: config.edge.queue_timeout,
        max_queued: config.edge.max_queued,
    }
}

/// Lowers the edge's connection limits where they do not fit under `limit` open files
/// (saying so), so that clients and machines cannot take the descriptors the API and
/// edgewake itself need. At start and at every reload.
pub(super) fn fit_descriptors(config: &mut Config, limit: u64) {
    let edge = &mut config.edge;
    let wanted = Shares {
        clients: edge.max_connections,
        upstream: edge.max_upstream_connections,
    };
    let granted = crate::listener::share_descriptors(limit, config.api.max_connections, wanted);
    if granted != wanted {
        tracing::warn!(
            limit,
            "edge.max_connections ({}) and edge.max_upstream_connections ({}) do not fit under the open-file limit: lowered to {} and {} (raise the hard limit, e.g. systemd's LimitNOFILE, to keep them)",
            wanted.clients,
            wanted.upstream,
            granted.clients,
            granted.upstream
        );
    }
    edge.max_connections = granted.clients;
    edge.max_upstream_connections = granted.upstream;
}

fn proxy_settings(
    config: &Config,
    geo: GeoDb,
    hostnames: &Arc<Hostnames>,
    tls: &Tls,
) -> ProxySettings {
    let edge = &config.edge;
    ProxySettings {
        domains: edge.domains.clone(),
        edge_region: edge.region.clone(),
        regions: Regions::new(&config.regions, &edge.region),
        geo,
        trusted: Trusted::new(edge.trusted_proxies.clone()),
        hostnames: hostnames.clone(),
        challenges: tls.challenges().clone(),
        client_body: ClientPolicy::for_edge(config).body,
        machine: MachinePolicy::from_config(config),
        pool_queue_timeout: edge.queue_timeout,
        sleeping: Sleeping::new(
            config.wake.clone(),
            config.no_wake.clone(),
            wake_page::read_template(&config.wake),
        ),
        replay: config.replay.clone(),
        access_log: config.log.access,
    }
}

pub(super) fn edge_settings(config: &Config) -> EdgeSettings {
    EdgeSettings::new(
        Trusted::new(config.edge.trusted_proxies.clone()),
        ClientPolicy::for_edge(config),
    )
}

fn region_list(config: &Config) -> RegionList {
    RegionList {
        codes: config.regions.iter().map(|r| r.code.clone()).collect(),
        edge: config.edge.region.clone(),
    }
}

/// What a reload reaches: every part that reads settings a reload may change, and the
/// config in force.
pub(super) struct Live {
    pub(super) proxy: Arc<Proxy>,
    pub(super) edge: Arc<Edge>,
    pub(super) tls: Arc<Tls>,
    pub(super) supervisor: Arc<Supervisor>,
    pub(super) regions: Arc<ArcSwap<RegionList>>,
    /// Custom hostnames and ACME answers: the proxy's, kept across reloads.
    hostnames: Arc<Hostnames>,
    pub(super) config: std::sync::Mutex<Config>,
}

impl Live {
    pub(super) fn new(
        config: Config,
        geo: GeoDb,
        supervisor: &Arc<Supervisor>,
        tls: &Arc<Tls>,
        hostnames: Arc<Hostnames>,
        cancel: &CancellationToken,
        backhaul: Option<Arc<BackhaulKey>>,
    ) -> std::io::Result<Live> {
        // Started before anything serves: a thread that cannot be had stops the start.
        let workers = Workers::start(config.edge.workers)?;
        let settings = proxy_settings(&config, geo, &hostnames, tls);
        let proxy = Arc::new(Proxy::new(
            supervisor.clone(),
            settings,
            UpstreamLimits::from_config(&config),
            backhaul,
        ));
        let edge = Arc::new(Edge::new(
            proxy.clone(),
            config.edge.max_connections,
            cancel.clone(),
            edge_settings(&config),
            workers,
        ));
        Ok(Live {
            proxy,
            edge,
            tls: tls.clone(),
            supervisor: supervisor.clone(),
            regions: Arc::new(ArcSwap::from_pointee(region_list(&config))),
            hostnames,
            config: std::sync::Mutex::new(config),
        })
    }

    /// Puts a (validated) config's live settings in force everywhere they are read.
    pub(super) fn apply(&self, config: &Config, geo: GeoDb) {
        self.supervisor.set_settings(settings(config));
        let settings = proxy_settings(config, geo, &self.hostnames, &self.tls);
        self.proxy.set_settings(settings);
        self.edge.set_settings(edge_settings(config));
        self.edge.set_max_connections(config.edge.max_connections);
        self.tls.set_handshake_timeout(config.tls.handshake_timeout);
        self.regions.store(Arc::new(region_list(config)));
    }

    pub(super) fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
