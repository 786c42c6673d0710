//! The `edgewake` command: `serve` runs the edge and the Machines API; `check-config`
//! validates a config file and lists every problem.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgewake::config::{self, Config, DriverKind};
use edgewake::server::{self, Options};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    version,
    about = "Machines that wake on request: a Fly-compatible Machines API and edge proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge proxy and the Machines API.
    Serve(ServeArgs),
    /// Validate a config file and print every problem in it.
    CheckConfig {
        #[arg(long, default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// The local image store: import, pull, list and remove images.
    Images(edgewake::cli::images::ImagesArgs),
    #[command(flatten)]
    Client(edgewake::cli::Command),
    /// Run the bundled function runtime (what `flyio/fastify-functions` runs as).
    #[command(hide = true)]
    Functions,
    /// Hooks the OCI runtime runs for sandboxed machines (the container state on stdin).
    #[command(hide = true)]
    SandboxHook {
        #[command(subcommand)]
        hook: SandboxHook,
    },
}

#[derive(Subcommand)]
enum SandboxHook {
    /// Wire a machine's veth link into its new network namespace.
    Network {
        #[arg(long)]
        address: std::net::Ipv4Addr,
        #[arg(long)]
        gateway: std::net::Ipv4Addr,
        #[arg(long)]
        egress: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Plain-HTTP edge listener [default: from config, else 0.0.0.0:80]
    #[arg(long)]
    http: Option<SocketAddr>,
    /// HTTPS edge listener [default: from config, else 0.0.0.0:443]
    #[arg(long)]
    https: Option<SocketAddr>,
    /// Machines API listener [default: from config, else 127.0.0.1:4280]
    #[arg(long)]
    api: Option<SocketAddr>,
    /// State, token and machine logs [default: from config, else ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How machines run: `process` (local commands) or `sandbox` (OCI images under runc)
    /// [default: from config, else process]
    #[arg(long)]
    driver: Option<DriverKind>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve(args) => serve(args),
        Command::Images(args) => {
            let config = load_for_serve(&args.config)?;
            let registries = server::registry_auth(&config.sandbox.registries);
            if !edgewake::cli::images::run(args, registries) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Functions => Ok(edgewake::functions::run()?),
        Command::SandboxHook { hook } => sandbox_hook(hook),
        Command::Client(command) => {
            if !edgewake::cli::run(command) {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Runs a runtime hook: errors go to stderr, where runc reports them.
fn sandbox_hook(hook: SandboxHook) -> anyhow::Result<()> {
    let SandboxHook::Network {
        address,
        gateway,
        egress,
    } = hook;
    let mut state = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut state)?;
    let link = edgewake::drivers::sandbox::network::Link {
        address,
        gateway,
        egress,
    };
    // The message already holds its causes: as a plain message, runc's report of the
    // hook's stderr says them once (a chain would print them twice).
    link.wire(&state).map_err(anyhow::Error::msg)
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    match Config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            Ok(())
        }
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            std::process::exit(1);
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let mut config = load_for_serve(&args.config)?;
    config.edge.http = args.http.unwrap_or(config.edge.http);
    config.edge.https = args.https.unwrap_or(config.edge.https);
    config.api.listen = args.api.unwrap_or(config.api.listen);
    config.data_dir = args.data_dir.unwrap_or(config.data_dir);
    config.machines.driver = args.driver.unwrap_or(config.machines.driver);
    let options = Options {
        api_token: token_from_env(),
        ..Options::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = server::start(config, options).await?;
        shutdown_signal().await;
        tracing::info!("shutting down: draining requests, then stopping machines");
        running.shutdown();
        running.stopped().await;
        anyhow::Ok(())
    })
}

/// The config file; a missing default file means built-in defaults, a missing named one
/// is an error.
fn load_for_serve(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() && path == Path::new(config::DEFAULT_CONFIG_PATH) {
        tracing::warn!("{} not found: using built-in defaults", path.display());
        return Ok(Config::default());
    }
    Config::load(path).with_context(|| format!("config {}", path.display()))
}

/// `EDGEWAKE_API_TOKEN`, else Fly's `FLY_API_TOKEN`.
fn token_from_env() -> Option<String> {
    ["EDGEWAKE_API_TOKEN", "FLY_API_TOKEN"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
