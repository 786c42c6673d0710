//! Wiring: opens state, recovers machines, loads the hostnames and their certificates
//! (starting ACME where configured), binds the edge (HTTP, HTTPS) and API listeners,
//! runs the reaper and certificate reloads, and shuts everything down in order (stop
//! accepting, drain, stop machines).

use crate::api::{self, ApiState};
use crate::certificates::Certificates;
use crate::certificates::acme::timing::{Backoff, DEFAULT_BACKOFF};
use crate::config::{Config, DriverKind};
use crate::drivers::Driver;
use crate::drivers::process::ProcessDriver;
use crate::drivers::sandbox::SandboxDriver;
use crate::edge::{self, ConnectionLimits, Edge};
use crate::geo::GeoDb;
use crate::hostnames::Hostnames;
use crate::images::{IdMap, ImageStore, RegistryAuth};
use crate::lifecycle::{Settings, Supervisor};
use crate::machines::Registry;
use crate::machines::store::Store;
use crate::proxy::place::Regions;
use crate::proxy::{Inbound, Proxy, ProxySettings};
use crate::tls::Tls;
use crate::trusted::Trusted;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Name of the state database in the data dir.
pub const STATE_FILE: &str = "edgewake.db";

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
}

/// The geo databases, if configured; without them every client is placed at the edge.
fn open_geo(config: &Config) -> Result<GeoDb, StartError> {
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
    pub api_token: String,
    pub supervisor: Arc<Supervisor>,
    pub tls: Arc<Tls>,
    pub certificates: Arc<Certificates>,
    cancel: CancellationToken,
    done: JoinHandle<()>,
}

impl Running {
    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.cancel.cancel();
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
}

fn bind_all(config: &Config) -> Result<Sockets, StartError> {
    let bind = |what, addr| {
        crate::listener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })
    };
    Ok(Sockets {
        http: bind("edge HTTP", config.edge.http)?,
        https: bind("edge HTTPS", config.edge.https)?,
        api: bind("Machines API", config.api.listen)?,
    })
}

/// Starts edgewake; returns once every listener is bound.
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let data_dir = config.data_dir.clone();
    let data_dir_error = |source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&data_dir).map_err(data_dir_error)?;
    let supervisor = open_machines(&config, options.bin_dir, options.driver)?;
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

    let api_state = ApiState {
        supervisor: supervisor.clone(),
        certificates: certificates.clone(),
        token: api_token.clone().into(),
        regions: config.regions.iter().map(|r| r.code.clone()).collect(),
        edge_region: config.edge.region.clone().into(),
    };
    let geo = open_geo(&config)?;
    let served = Served {
        config,
        geo,
        supervisor: supervisor.clone(),
        tls: tls.clone(),
        hostnames,
        certificates: certificates.clone(),
        cancel: cancel.clone(),
    };
    let done = tokio::spawn(served.run(sockets, api_state));
    tracing::info!(%http_addr, %https_addr, %api_addr, "edgewake is serving");
    Ok(Running {
        http_addr,
        https_addr,
        api_addr,
        api_token,
        supervisor,
        tls,
        certificates,
        cancel,
        done,
    })
}

/// Opens the state, the driver and the supervisor, and makes machine states true again.
fn open_machines(
    config: &Config,
    bin_dir: Option<PathBuf>,
    driver: Option<Arc<dyn Driver>>,
) -> Result<Arc<Supervisor>, StartError> {
    let store = Store::open(&config.data_dir.join(STATE_FILE))?;
    let sandboxed = config.machines.driver == DriverKind::Sandbox;
    let range = match sandboxed {
        true => config.sandbox.network,
        false => config.machines.private_ip_range,
    };
    let (registry, stored) = Registry::load(store, range)?;
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
        settings(config),
    ));
    supervisor.recover(stored);
    Ok(supervisor)
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

fn settings(config: &Config) -> Settings {
    Settings {
        wake_timeout: config.edge.wake_timeout,
        probe_interval: config.edge.probe_interval,
        stop_signal: config.machines.stop_signal,
        stop_timeout: config.machines.stop_timeout,
        queue_timeout: config.edge.queue_timeout,
        max_queued: config.edge.max_queued,
    }
}

fn limits(config: &Config) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: config.edge.header_read_timeout,
        keepalive_timeout: config.edge.keepalive_timeout,
        max_header_count: config.edge.max_header_count,
        max_header_bytes: config.edge.max_header_bytes,
    }
}

/// What the serving task owns.
struct Served {
    config: Config,
    geo: GeoDb,
    supervisor: Arc<Supervisor>,
    tls: Arc<Tls>,
    hostnames: Arc<Hostnames>,
    certificates: Arc<Certificates>,
    cancel: CancellationToken,
}

impl Served {
    async fn run(self, sockets: Sockets, api_state: ApiState) {
        let Served {
            config,
            geo,
            supervisor,
            tls,
            hostnames,
            certificates,
            cancel,
        } = self;
        let edge_config = &config.edge;
        let trusted = Trusted::new(edge_config.trusted_proxies.clone());
        let settings = ProxySettings {
            domains: edge_config.domains.clone(),
            edge_region: edge_config.region.clone(),
            regions: Regions::new(&config.regions, &edge_config.region),
            geo,
            trusted: trusted.clone(),
            hostnames,
            challenges: tls.challenges().clone(),
        };
        let proxy = Arc::new(Proxy::new(supervisor.clone(), settings));
        let edge = Arc::new(Edge::new(
            proxy,
            trusted,
            edge_config.max_connections,
            cancel.clone(),
            limits(&config),
        ));
        let reaper = tokio::spawn(supervisor.clone().reap_idle(
            edge_config.idle_timeout,
            edge_config.reap_interval,
            cancel.clone(),
        ));
        let reloads = tokio::spawn(reload_on_sighup(tls.clone(), cancel.clone()));
        let api = tokio::spawn(serve_api(sockets.api, api_state, cancel.clone()));
        let http_inbound = Inbound {
            service_port: edge_config.http_service_port,
            scheme: "http",
            proxy_protocol: edge_config.http_proxy_protocol,
        };
        let https_inbound = Inbound {
            service_port: edge_config.https_service_port,
            scheme: "https",
            proxy_protocol: edge_config.https_proxy_protocol,
        };
        tokio::join!(
            edge::serve(sockets.http, edge.clone(), http_inbound, None),
            edge::serve(sockets.https, edge.clone(), https_inbound, Some(tls)),
        );
        // The accept loops return only once cancelled: drain what is in flight.
        supervisor.close_all_tunnels().await;
        edge.connections.close();
        let drain = edge_config.drain_timeout;
        if tokio::time::timeout(drain, edge.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still in flight after {drain:?}; stopping the machines under them"
            );
        }
        let _ = tokio::time::timeout(drain, api).await;
        let _ = tokio::join!(reaper, reloads);
        if let Some(acme) = certificates.acme() {
            acme.stopped().await;
        }
        supervisor.shutdown().await;
        supervisor.driver().close();
        tracing::info!("edgewake stopped");
    }
}

async fn serve_api(listener: TcpListener, state: ApiState, cancel: CancellationToken) {
    let app = api::router(state);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
}

/// SIGHUP reloads the certificates; a bad file keeps the old ones and says why.
async fn reload_on_sighup(tls: Arc<Tls>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return tracing::warn!("cannot listen for SIGHUP: certificates will not reload");
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = hangups.recv() => {
                if let Err(e) = tls.reload() {
                    tracing::error!("certificate reload failed, keeping the old certificates: {e}");
                }
            }
        }
    }
}
