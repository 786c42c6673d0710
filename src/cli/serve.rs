//! `edgewake serve` as a process: the config found and said, logging fit for a terminal
//! or a file, the pid file, SIGHUP reloads and SIGTERM/SIGINT shutdown; and `edgewake
//! reload`, which sends that SIGHUP to the server of a data dir.

use super::pidfile::{self, PidError, PidFile};
use crate::config::{Config, DriverKind, Located, LogFormat, locate::LoadError};
use crate::server::{self, Options, Running};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// `serve`'s flags: each overrides the config file.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Plain-HTTP edge listener [default: from config, else 0.0.0.0:80]
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// HTTPS edge listener [default: from config, else 0.0.0.0:443]
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,
    /// Machines API listener [default: from config, else 127.0.0.1:4280]
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// State, token, pid file and machine logs [default: from config, else ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How machines run: `process` (local commands) or `sandbox` (OCI images under runc)
    /// [default: from config, else process]
    #[arg(long)]
    pub driver: Option<DriverKind>,
}

impl ServeArgs {
    /// The flags laid over a config (at start and at every reload alike).
    fn apply(&self, mut config: Config) -> Config {
        config.edge.http = self.http.unwrap_or(config.edge.http);
        config.edge.https = self.https.unwrap_or(config.edge.https);
        config.api.listen = self.api.unwrap_or(config.api.listen);
        config.data_dir = self.data_dir.clone().unwrap_or(config.data_dir);
        config.machines.driver = self.driver.unwrap_or(config.machines.driver);
        config
    }
}

/// Why `serve` or `reload` could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Pid(#[from] PidError),
    #[error(transparent)]
    Start(#[from] server::StartError),
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(std::io::Error),
    #[error("cannot signal edgewake (pid {pid}): {source}")]
    Signal { pid: i32, source: nix::Error },
}

/// How the log filter is set: by `RUST_LOG` for the whole run, or by the config's
/// `log_level`, reloadable.
enum LogFilter {
    Environment,
    Config(reload::Handle<Targets, Registry>),
}

impl LogFilter {
    fn apply(&self, config: &Config) {
        if let LogFilter::Config(handle) = self
            && let Err(e) = handle.reload(config.log_level.clone())
        {
            tracing::warn!("cannot change the log level: {e}");
        }
    }
}

/// Logs to stderr; colours only when stderr is a terminal (and `NO_COLOR` is unset),
/// so a log piped to a file or journald carries no escape codes.
/// The format (text or JSON lines, `log.format`) is fixed at start.
fn init_logging(format: LogFormat) -> LogFilter {
    let format = crate::observe::format::layer(format);
    match EnvFilter::try_from_default_env() {
        Ok(filter) => {
            Registry::default().with(format.with_filter(filter)).init();
            LogFilter::Environment
        }
        Err(_) => {
            let (filter, handle) = reload::Layer::new(Config::default().log_level);
            Registry::default().with(format.with_filter(filter)).init();
            LogFilter::Config(handle)
        }
    }
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP reads the config again.
pub fn serve(
    located: Located,
    args: ServeArgs,
    api_token: Option<String>,
) -> Result<(), ServeError> {
    // The config says the log's format, so it is read before anything is logged.
    let config = args.apply(located.load()?);
    let logs = init_logging(config.log.format);
    logs.apply(&config);
    if let LogFilter::Environment = logs {
        tracing::info!("RUST_LOG sets what is logged: the config's log_level is not used");
    }
    match &located {
        Located::File { .. } => tracing::info!("config {located}"),
        Located::Nowhere => tracing::warn!(
            "{located}: running on built-in defaults (machines stop after {:?} idle, data in {})",
            config.edge.idle_timeout,
            config.data_dir.display()
        ),
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let _pid = PidFile::claim(&config.data_dir)?;
    let options = Options {
        api_token,
        ..Options::default()
    };
    let runtime = tokio::runtime::Runtime::new().map_err(ServeError::Runtime)?;
    let outcome = runtime.block_on(async {
        let running = server::start(config, options).await?;
        until_stopped(&running, &located, &args, &logs).await;
        tracing::info!("shutting down: draining requests, then stopping machines");
        running.shutdown();
        running.stopped().await;
        Ok(())
    });
    // Blocking threads still reading a machine's output (a process that outlived its
    // stop) must not hold the exit: the state is saved, nothing is left to wait for.
    drop(runtime);
    outcome
}

/// Serves until SIGTERM or SIGINT, reloading on every SIGHUP.
async fn until_stopped(running: &Running, located: &Located, args: &ServeArgs, logs: &LogFilter) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot listen for signals: stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(running, located, args, logs),
        }
    }
}

/// Reads the config again and applies it; a bad file or certificate changes nothing.
fn reload(running: &Running, located: &Located, args: &ServeArgs, logs: &LogFilter) {
    let config = match located.load() {
        Ok(config) => args.apply(config),
        Err(e) => return tracing::error!("reload refused, nothing changed: {e}"),
    };
    let log_config = config.clone();
    match running.reload(config) {
        Ok(reloaded) => {
            logs.apply(&log_config);
            for change in &reloaded.changed {
                tracing::info!("reload: {change}");
            }
            for key in &reloaded.kept {
                tracing::warn!(
                    "reload: `{key}` changed in the file but cannot change while serving: \
                     the running value stays until a restart"
                );
            }
            tracing::info!(
                "reloaded {located}: {} setting(s) changed, certificates read again",
                reloaded.changed.len()
            );
        }
        Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
    }
}

/// `edgewake reload`: checks the config, then sends SIGHUP to the server of the data dir.
pub fn send_reload(located: &Located, data_dir: Option<PathBuf>) -> Result<(), ServeError> {
    let config = located.load()?;
    let data_dir = data_dir.unwrap_or(config.data_dir);
    let pid = pidfile::running_pid(&data_dir)?;
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|source| ServeError::Signal { pid, source })?;
    match located.path() {
        Some(path) => println!(
            "Sent SIGHUP to edgewake (pid {pid}): it reads {} again; its log says what changed",
            path.display()
        ),
        None => println!("Sent SIGHUP to edgewake (pid {pid}): it reads its certificates again"),
    }
    Ok(())
}
