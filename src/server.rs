//! Wiring: opens state, recovers machines, binds the edge and API listeners, runs the
//! reaper, and shuts everything down in order (stop accepting, drain, stop machines).

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::http::{self, Edge};
use crate::machines::driver::{Driver, parse_signal};
use crate::machines::process::ProcessDriver;
use crate::machines::store::Store;
use crate::machines::{Registry, Settings, Supervisor, reaper};
use crate::proxy::{Listener, Proxy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name of the state database in the data dir.
pub const STATE_FILE: &str = "edgewake.db";

/// What the caller may set beyond the config file.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The API token; when absent, one kept in the data dir is used (or generated).
    pub api_token: Option<String>,
    /// Where `{bin_dir}` in the image catalog points; defaults to edgewake's own directory.
    pub bin_dir: Option<PathBuf>,
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
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running edgewake.
pub struct Running {
    pub http_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub api_token: String,
    pub supervisor: Arc<Supervisor>,
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

/// Starts edgewake; returns once every listener is bound.
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let store = Store::open(&data_dir.join(STATE_FILE))?;
    let (registry, stored) = Registry::load(store, &config.machines.private_ip_range)?;
    let mut driver = ProcessDriver::new(&data_dir, config.images.clone());
    if let Some(bin_dir) = options.bin_dir {
        driver = driver.with_bin_dir(bin_dir);
    }
    let driver: Arc<dyn Driver> = Arc::new(driver);
    let supervisor = Arc::new(Supervisor::new(
        Arc::new(registry),
        driver,
        settings(&config),
    ));
    supervisor.recover(stored);

    let api_token = api::auth::resolve_token(options.api_token, &data_dir).map_err(|source| {
        StartError::DataDir {
            path: data_dir.clone(),
            source,
        }
    })?;
    let bind = |what, addr| {
        crate::listener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })
    };
    let http_tcp = bind("edge HTTP", config.edge.http)?;
    let api_tcp = bind("Machines API", config.api.listen)?;
    let (http_addr, api_addr) = (local(&http_tcp), local(&api_tcp));
    if config.edge.https != config.edge.http {
        tracing::info!(
            "HTTPS ({}) is not served yet: TLS termination is its own step",
            config.edge.https
        );
    }

    let cancel = CancellationToken::new();
    let proxy = Arc::new(Proxy::new(
        supervisor.clone(),
        config.edge.domains.clone(),
        config.edge.region.clone(),
    ));
    let edge = Arc::new(Edge {
        proxy,
        listener: Listener {
            service_port: config.edge.http_service_port,
            scheme: "http",
        },
        limit: Arc::new(Semaphore::new(config.edge.max_connections)),
        cancel: cancel.clone(),
        connections: TaskTracker::new(),
    });
    let api_state = ApiState {
        supervisor: supervisor.clone(),
        token: api_token.clone().into(),
        regions: config.regions.iter().map(|r| r.code.clone()).collect(),
        edge_region: config.edge.region.clone().into(),
    };
    let done = tokio::spawn(run(
        config,
        edge,
        http_tcp,
        api_tcp,
        api_state,
        supervisor.clone(),
        cancel.clone(),
    ));
    tracing::info!(%http_addr, %api_addr, "edgewake is serving");
    Ok(Running {
        http_addr,
        api_addr,
        api_token,
        supervisor,
        cancel,
        done,
    })
}

fn settings(config: &Config) -> Settings {
    Settings {
        wake_timeout: config.edge.wake_timeout,
        probe_interval: config.edge.probe_interval,
        stop_signal: parse_signal(&config.machines.stop_signal).expect("validated config"),
        stop_timeout: config.machines.stop_timeout,
    }
}

fn local(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

async fn run(
    config: Config,
    edge: Arc<Edge>,
    http_tcp: tokio::net::TcpListener,
    api_tcp: tokio::net::TcpListener,
    api_state: ApiState,
    supervisor: Arc<Supervisor>,
    cancel: CancellationToken,
) {
    let reaper = tokio::spawn(reaper::run(
        supervisor.clone(),
        config.edge.idle_timeout,
        config.edge.reap_interval,
        cancel.clone(),
    ));
    let api = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let app = api::router(api_state);
            let _ = axum::serve(api_tcp, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        }
    });
    http::serve(http_tcp, edge.clone()).await;
    // The accept loop returns only once cancelled: drain what is in flight.
    edge.connections.close();
    if tokio::time::timeout(config.edge.drain_timeout, edge.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; cutting them",
            config.edge.drain_timeout
        );
    }
    let _ = tokio::time::timeout(config.edge.drain_timeout, api).await;
    let _ = reaper.await;
    supervisor.shutdown().await;
    tracing::info!("edgewake stopped");
}
