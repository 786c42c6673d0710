//! Wiring: opens state, recovers machines, loads the hostnames and their certificates
//! (starting ACME where configured), binds the edge (HTTP, HTTPS) and API listeners
//! (and in a cluster the backhaul, with a connection limit of its own, and joins it),
//! runs the reaper, applies reloaded configs (`reload`), and shuts everything down in
//! order (stop accepting, drain, stop machines, end the edge's workers).

mod live;
mod membership;
mod reload;

use live::Live;
use membership::Backhaul;
pub use reload::{ReloadError, Reloaded};

use crate::addresses::RangeClaim;
use crate::api::{self, ApiState};
use crate::certificates::Certificates;
use crate::certificates::acme::timing::{Backoff, DEFAULT_BACKOFF};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{Config, DriverKind};
use crate::connection::ClientPolicy;
use crate::drivers::Driver;
use crate::drivers::process::ProcessDriver;
use crate::drivers::sandbox::SandboxDriver;
use crate::edge;
use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::images::{IdMap, ImageStore, RegistryAuth};
use crate::lifecycle::Supervisor;
use crate::machines::Registry;
use crate::machines::store::Store;
use crate::proxy::Inbound;
use crate::tls::Tls;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name of the state database in the data dir.
pub const STATE_FILE: &str = "edgewake.db";
/// The data dir holds the state, the API token and machines' files: others may not
/// list or read it, only pass through (a sandbox's user-namespaced root mounts its
/// rootfs below it).
pub const DATA_DIR_MODE: u32 = 0o711;

/// What the caller may set beyond the config file.
#[derive(Default, Clone)]
pub struct Options {
    /// The API token; when absent, one kept in the data dir is used (or generated).
    pub api_token: Option<String>,
    /// Where `{bin_dir}` in the image catalog points; defaults to edgewake's own directory.
    pub bin_dir: Option<PathBuf>,
    /// Runs machines with this driver instead of the configured one (tests pass the
    /// in-memory `fake` driver).
    pub driver: Option<Arc<dyn Driver>>,
    /// Backoff between failed ACME orders instead of `DEFAULT_BACKOFF` (tests that
    /// watch retries shorten it).
    pub acme_backoff: Option<Backoff>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::machines::store::StoreError),
    #[error(transparent)]
    Hostnames(#[from] crate::hostnames::store::StoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(#[from] crate::tls::certs::CertError),
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    #[error(transparent)]
    Sandbox(#[from] crate::drivers::sandbox::SetupError),
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Range(#[from] crate::addresses::ClaimError),
    #[error("cannot start the edge workers: {0}")]
    Workers(std::io::Error),
}

/// The geo databases, if configured; without them every client is placed at the edge.
fn open_geo(config: &Config) -> Result<GeoDb, crate::geo::GeoError> {
    let geo = GeoDb::open(config.geo.ipv4_db.as_deref(), config.geo.ipv6_db.as_deref())?;
    if geo.is_empty() {
        tracing::info!(
            "no geo database: clients are placed at the edge's region {}",
            config.edge.region
        );
    }
    Ok(geo)
}

/// A running edgewake.
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The backhaul listener, in a cluster.
    pub backhaul_addr: Option<SocketAddr>,
    pub api_token: String,
    pub supervisor: Arc<Supervisor>,
    pub cluster: Option<Arc<Cluster>>,
    pub tls: Arc<Tls>,
    pub certificates: Arc<Certificates>,
    live: Arc<Live>,
    cancel: CancellationToken,
    done: JoinHandle<()>,
}

impl Running {
    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Applies a config read again (SIGHUP) and the certificates: what can change live
    /// does, what cannot is kept and named in the answer; on an error nothing changed.
    /// Called within the runtime.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        reload::reload(&self.live, config)
    }

    /// The config in force: the one started with, plus what reloads changed.
    pub fn config(&self) -> Config {
        self.live.config()
    }

    /// Waits until shutdown has finished: requests drained, machines stopped.
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// The bound sockets, before anything is served on them.
struct Sockets {
    http: TcpListener,
    https: TcpListener,
    api: TcpListener,
    backhaul: Option<TcpListener>,
}

fn bind_all(config: &Config) -> Result<Sockets, StartError> {
    let bind = |what, addr| {
        crate::listener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })
    };
    Ok(Sockets {
        http: bind("edge HTTP", config.edge.http)?,
        https: bind("edge HTTPS", config.edge.https)?,
        api: bind("Machines API", config.api.listen)?,
        backhaul: match &config.cluster {
            Some(cluster) => Some(bind("cluster backhaul", cluster.backhaul)?),
            None => None,
        },
    })
}

/// Starts edgewake; returns once every listener is bound.
pub async fn start(mut config: Config, options: Options) -> Result<Running, StartError> {
    live::fit_descriptors(&mut config, crate::listener::raise_fd_limit());
    let data_dir = config.data_dir.clone();
    let data_dir_error = |source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    };
    crate::files::dir_with_mode(&data_dir, DATA_DIR_MODE).map_err(data_dir_error)?;
    let (supervisor, claim) = open_machines(&config, options.bin_dir, options.driver).await?;
    let api_token =
        api::auth::resolve_token(options.api_token, &data_dir).map_err(data_dir_error)?;
    let tls = Arc::new(Tls::new(&config)?);
    let cancel = CancellationToken::new();
    let hostnames = Arc::new(Hostnames::open(&data_dir.join(STATE_FILE))?);
    let backoff = options.acme_backoff.unwrap_or(DEFAULT_BACKOFF);
    let registry = supervisor.registry.clone();
    let certificates = Certificates::open(&config, &tls, &hostnames, registry, backoff, &cancel);
    let sockets = bind_all(&config)?;
    let local = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
    let (http_addr, https_addr, api_addr) = (
        local(&sockets.http),
        local(&sockets.https),
        local(&sockets.api),
    );
    let backhaul_addr = sockets.backhaul.as_ref().map(local);
    let joined = membership::join(&config, &supervisor.registry, backhaul_addr, api_addr).await?;
    let cluster = joined.as_ref().map(|(cluster, _)| cluster.clone());

    supervisor.set_api_url(api_addr);
    let geo = open_geo(&config)?;
    let keep_awake_max = config.wake.keep_awake_max;
    let backhaul_key = joined.map(|(_, key)| key);
    let live = Arc::new(
        Live::new(
            config,
            geo,
            &supervisor,
            &tls,
            hostnames,
            &cancel,
            backhaul_key,
        )
        .map_err(StartError::Workers)?,
    );
    let api_state = ApiState {
        supervisor: supervisor.clone(),
        certificates: certificates.clone(),
        token: api_token.clone().into(),
        regions: live.regions.clone(),
        stopping: cancel.clone(),
        cluster: cluster.clone(),
        forwarder: api::forward::Forwarder::default(),
        keep_awake_max,
    };
    let served = serve(
        live.clone(),
        sockets,
        api_state,
        certificates.clone(),
        cancel.clone(),
        claim,
        cluster.clone(),
    );
    let done = tokio::spawn(served);
    let workers = live.edge.workers.count();
    tracing::info!(%http_addr, %https_addr, %api_addr, workers, "edgewake is serving");
    Ok(Running {
        http_addr,
        https_addr,
        api_addr,
        backhaul_addr,
        api_token,
        supervisor,
        cluster,
        tls,
        certificates,
        live,
        cancel,
        done,
    })
}

/// Claims the machines' address range, opens the state, the driver and the
/// supervisor, and makes machine states true again. The claim comes first: an
/// edgewake that would share its range with a running one touches nothing.
async fn open_machines(
    config: &Config,
    bin_dir: Option<PathBuf>,
    driver: Option<Arc<dyn Driver>>,
) -> Result<(Arc<Supervisor>, RangeClaim), StartError> {
    let sandboxed = config.machines.driver == DriverKind::Sandbox;
    let range = match sandboxed {
        true => config.sandbox.network,
        false => config.machines.private_ip_range,
    };
    let claim = range.claim()?;
    let store = Store::open(&config.data_dir.join(STATE_FILE))?;
    let (registry, stored) = Registry::load(store, range)?;
    let registry = registry.with_limits(config.limits);
    if config.cluster.is_some() {
        // From recovery on, every change to a machine hosted here is shared.
        registry.share_changes();
    }
    let bin_dir = bin_dir.unwrap_or_else(own_dir);
    let driver: Arc<dyn Driver> = match (driver, sandboxed) {
        (Some(driver), _) => driver,
        (None, true) => Arc::new(sandbox_driver(config, &bin_dir)?),
        (None, false) => Arc::new(
            ProcessDriver::new(&config.data_dir, config.images.clone()).with_bin_dir(bin_dir),
        ),
    };
    let supervisor = Arc::new(Supervisor::new(
        Arc::new(registry),
        driver,
        live::settings(config),
    ));
    supervisor.recover(stored).await;
    Ok((supervisor, claim))
}

/// The directory of the running edgewake binary.
fn own_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default()
}

/// The sandbox driver with its image store; fails, naming what is missing, when the
/// host cannot run it.
fn sandbox_driver(config: &Config, bin_dir: &std::path::Path) -> Result<SandboxDriver, StartError> {
    let images = ImageStore::new(
        &config.data_dir,
        registry_auth(&config.sandbox.registries),
        config.sandbox.user_namespace.then_some(IdMap {
            host_id: config.sandbox.id_map_base,
            size: config.sandbox.id_map_size,
        }),
    );
    let hook = bin_dir.join("edgewake");
    Ok(SandboxDriver::new(
        &config.data_dir,
        &config.sandbox,
        Arc::new(images),
        hook,
    )?)
}

/// Registry credentials from config; `password_env` is read now.
pub fn registry_auth(registries: &[crate::config::RegistryConfig]) -> Vec<RegistryAuth> {
    registries
        .iter()
        .map(|r| RegistryAuth {
            host: r.host.clone(),
            username: r.username.clone(),
            password: r
                .password
                .clone()
                .or_else(|| std::env::var(r.password_env.as_deref()?).ok()),
            insecure: r.insecure,
        })
        .collect()
}

/// Serves until cancelled, then shuts down in order: stop accepting, drain requests
/// (up to the drain timeout in force), stop the machines.
async fn serve(
    live: Arc<Live>,
    sockets: Sockets,
    api_state: ApiState,
    certificates: Arc<Certificates>,
    cancel: CancellationToken,
    // Held until every machine has stopped: then another edgewake may take the range.
    claim: RangeClaim,
    cluster: Option<Arc<Cluster>>,
) {
    let config = live.config();
    let supervisor = live.supervisor.clone();
    let edge = live.edge.clone();
    let reaper = tokio::spawn(supervisor.clone().reap_idle(cancel.clone()));
    let trims = tokio::spawn(crate::memory::give_back_after_bursts(cancel.clone()));
    let api_connections = TaskTracker::new();
    let api = tokio::spawn(api::listen::serve(
        sockets.api,
        api::router(api_state),
        config.api.max_connections,
        ClientPolicy::for_api(&config),
        cancel.clone(),
        api_connections.clone(),
    ));
    if let Some(cluster) = &cluster {
        cluster.run(supervisor.clone(), cancel.clone());
    }
    let http_inbound = Inbound {
        service_port: config.edge.http_service_port,
        scheme: "http",
        proxy_protocol: config.edge.http_proxy_protocol,
        backhaul: false,
    };
    let https_inbound = Inbound {
        service_port: config.edge.https_service_port,
        scheme: "https",
        proxy_protocol: config.edge.https_proxy_protocol,
        backhaul: false,
    };
    let backhaul = Backhaul::new(sockets.backhaul, &config, &live, &cancel);
    let backhaul_connections = backhaul.connections();
    tokio::join!(
        edge::serve(sockets.http, edge.clone(), http_inbound, None),
        edge::serve(
            sockets.https,
            edge.clone(),
            https_inbound,
            Some(live.tls.clone())
        ),
        backhaul.serve(),
    );
    // The accept loops return only once cancelled: drain what is in flight.
    supervisor.close_all_tunnels().await;
    edge.connections.close();
    backhaul_connections.close();
    let all_drained = async {
        edge.connections.wait().await;
        backhaul_connections.wait().await;
    };
    // One deadline for the edge, the API and the reaper: shutdown takes at most the
    // drain timeout, then the machines' bounded stops (lifecycle's SHUTDOWN_BOUND).
    let drain = live.config().edge.drain_timeout;
    let drained = tokio::time::Instant::now() + drain;
    if tokio::time::timeout_at(drained, all_drained).await.is_err() {
        tracing::warn!(
            "requests still in flight after {drain:?}; stopping the machines under them"
        );
    }
    let _ = api.await;
    api_connections.close();
    let _ = tokio::time::timeout_at(drained, api_connections.wait()).await;
    // An idle stop under way goes on; shutdown's own stop of that machine waits for it.
    let _ = tokio::time::timeout_at(drained, reaper).await;
    let _ = trims.await;
    if let Some(acme) = certificates.acme() {
        acme.stopped().await;
    }
    supervisor.shutdown().await;
    // Only now are connections still open on workers cut: a request past the drain
    // timeout goes on while its machine stops, as it does on the main runtime.
    edge.workers.shut_down().await;
    if let Some(cluster) = &cluster {
        cluster.leave().await;
    }
    supervisor.driver().close();
    drop(claim);
    tracing::info!("edgewake stopped");
}
