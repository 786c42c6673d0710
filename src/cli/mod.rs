//! The operator's command line, with flyctl's habits: `status`, `apps …`, `machine …`
//! (also `machines`, `m`), `logs`, `certs …`, all talking to the Machines API like any
//! other client; `serve` and `reload` for the server itself, `images` on the local
//! store.
//!
//! The API's address is `--api-url`, else `EDGEWAKE_API_URL`, else Fly's
//! `FLY_API_HOSTNAME`, else the config's `api.listen`; the token is `--token`, else
//! `EDGEWAKE_API_TOKEN`, else `FLY_API_TOKEN`, else `<data_dir>/api-token` of the config
//! (found as every command finds it: `config::Located`). Machines are named by id or by
//! name. An error prints the API's message and exits 1.

mod apps;
pub mod certs;
pub mod client;
pub mod cluster;
mod commands;
pub mod images;
mod logs;
mod machine;
mod operations;
pub mod pidfile;
mod ports;
pub mod serve;
pub mod table;

use crate::config::Located;
use clap::{Args, Subcommand};
use client::{ApiClient, ClientError};
use std::net::SocketAddr;
use std::process::ExitCode;

pub use apps::AppsCommand;
pub use machine::{MachineCommand, MachineRef};

/// Where the API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The Machines API [default: $FLY_API_HOSTNAME, else the config's api.listen, else
    /// http://127.0.0.1:4280]
    #[arg(long, global = true, env = "EDGEWAKE_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// API token [default: $FLY_API_TOKEN, else <data_dir>/api-token of the config]
    #[arg(
        long,
        global = true,
        env = "EDGEWAKE_API_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// How a listing or a status is printed.
#[derive(Args, Debug, Clone, Copy)]
pub struct Output {
    /// Print the API's JSON instead of a table.
    #[arg(short, long)]
    pub json: bool,
}

/// The client commands, flattened into `edgewake`'s own.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show an app and its machines.
    Status {
        /// The app.
        #[arg(short, long, env = "FLY_APP")]
        app: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Connection,
    },
    /// Create, list and destroy apps.
    #[command(visible_alias = "app")]
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Run and manage machines.
    #[command(visible_aliases = ["machines", "m"])]
    Machine {
        #[command(subcommand)]
        command: MachineCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Hostnames of an app and their certificates (custom domains, ACME).
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Follow the output of every machine of an app, each line stamped with the time it
    /// arrived, the machine and its region (machines created meanwhile join in).
    Logs {
        /// The app.
        #[arg(short, long, env = "FLY_APP")]
        app: String,
        /// Print what the machines wrote so far and exit instead of following.
        #[arg(short, long)]
        no_tail: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs a client command; an error is printed (the API's message) and exit code 1
/// returned. `machine exec` exits with the command's own code.
pub fn run(command: Command, located: &Located) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Usage(e.to_string()))
        .and_then(|runtime| runtime.block_on(dispatch(command, located)));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, located: &Located) -> Result<ExitCode, ClientError> {
    match command {
        Command::Status { app, output, conn } => {
            commands::status(&connect(&conn, located)?, &app, output).await?;
        }
        Command::Apps { command, conn } => apps::run(&connect(&conn, located)?, command).await?,
        Command::Machine { command, conn } => {
            return machine::run(&connect(&conn, located)?, command).await;
        }
        Command::Certs {
            command: certs::CertsCommand::Generate { hosts, dir },
            ..
        } => {
            let dir = match dir {
                Some(dir) => dir,
                None => located.load()?.tls.certs_dir,
            };
            certs::generate(&hosts, &dir)?;
        }
        Command::Certs { command, conn } => certs::run(&connect(&conn, located)?, command).await?,
        Command::Logs { app, no_tail, conn } => {
            logs::app_logs(&connect(&conn, located)?, &app, !no_tail).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The API client: flags and the environment first, then the config file.
fn connect(conn: &Connection, located: &Located) -> Result<ApiClient, ClientError> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let url = match conn.api_url.clone().or_else(|| env("FLY_API_HOSTNAME")) {
        Some(url) => url,
        None => format!("http://{}", reachable(located.load()?.api.listen)),
    };
    let token = match conn.token.clone().or_else(|| env("FLY_API_TOKEN")) {
        Some(token) => token,
        None => token_from_data_dir(located)?,
    };
    Ok(ApiClient::new(client::base_url(&url)?, token))
}

/// Where a client reaches a listener: an unspecified address means this host.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// The token the server generated in its data dir (the config's).
fn token_from_data_dir(located: &Located) -> Result<String, ClientError> {
    let path = located.load()?.data_dir.join(crate::api::auth::TOKEN_FILE);
    std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "no API token: pass --token, set EDGEWAKE_API_TOKEN or FLY_API_TOKEN, or \
                 point --config / EDGEWAKE_CONFIG at the server's config (no token in {}; \
                 config: {located})",
                path.display()
            ))
        })
}
