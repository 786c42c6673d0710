//! The operator's command line: `status`, `apps …`, `machine …` and `certs …`, all
//! talking to the Machines API like any other client. The API's address is `--api-url`, else
//! `EDGEWAKE_API_URL`, else Fly's `FLY_API_HOSTNAME`, else 127.0.0.1:4280; the token
//! is `--token`, else `EDGEWAKE_API_TOKEN`, else `FLY_API_TOKEN`, else the file the
//! server keeps in `./data/api-token`. An error prints the API's message and exits 1.

pub mod certs;
pub mod client;
mod commands;
pub mod images;
mod ports;
pub mod table;

use clap::{Args, Subcommand};
use client::{ApiClient, ClientError};
use std::path::PathBuf;

/// Where the API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The Machines API [default: $FLY_API_HOSTNAME, else http://127.0.0.1:4280]
    #[arg(long, global = true, env = "EDGEWAKE_API_URL")]
    pub api_url: Option<String>,
    /// API token [default: $FLY_API_TOKEN, else ./data/api-token]
    #[arg(
        long,
        global = true,
        env = "EDGEWAKE_API_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
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
        conn: Connection,
    },
    /// Create, list and destroy apps.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Run and manage machines.
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
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        name: String,
        #[arg(long, default_value = "personal")]
        org: String,
    },
    /// List apps.
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Destroy an app and its machines.
    Destroy {
        name: String,
        /// Also stop running machines.
        #[arg(long)]
        force: bool,
    },
}

/// A machine of an app.
#[derive(Args, Debug)]
pub struct MachineRef {
    /// The machine's id.
    pub id: String,
    /// The app.
    #[arg(short, long, env = "FLY_APP")]
    pub app: String,
}

#[derive(Subcommand, Debug)]
pub enum MachineCommand {
    /// Create and start a machine running IMAGE.
    Run(commands::RunArgs),
    /// List an app's machines.
    List {
        #[arg(short, long, env = "FLY_APP")]
        app: String,
    },
    /// Show a machine and its events.
    Status(MachineRef),
    /// Start a stopped machine.
    Start(MachineRef),
    /// Stop a machine (waits until it has exited).
    Stop(MachineRef),
    /// Destroy a machine.
    Destroy {
        #[command(flatten)]
        machine: MachineRef,
        /// Destroy it even while it runs.
        #[arg(long)]
        force: bool,
    },
    /// Wait until a machine reaches a state.
    Wait {
        #[command(flatten)]
        machine: MachineRef,
        /// started, stopped, suspended, destroyed or settled.
        #[arg(long, default_value = "started")]
        state: String,
        /// Seconds, 1-60.
        #[arg(long, default_value_t = 60)]
        timeout: u32,
    },
    /// Print a machine's output.
    Logs {
        #[command(flatten)]
        machine: MachineRef,
        /// Keep printing new output until the machine is destroyed (or Ctrl-C).
        #[arg(short, long)]
        follow: bool,
    },
}

/// Runs a client command; an error is printed (the API's message) and `false` returned.
pub fn run(command: Command) -> bool {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Usage(e.to_string()))
        .and_then(|runtime| runtime.block_on(dispatch(command)));
    match outcome {
        Ok(()) => true,
        Err(e) => {
            eprintln!("Error: {e}");
            false
        }
    }
}

async fn dispatch(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Status { app, conn } => commands::status(&connect(&conn)?, &app).await,
        Command::Apps { command, conn } => commands::apps(&connect(&conn)?, command).await,
        Command::Machine { command, conn } => commands::machine(&connect(&conn)?, command).await,
        Command::Certs {
            command: certs::CertsCommand::Generate { hosts, dir },
            ..
        } => certs::generate(&hosts, &dir),
        Command::Certs { command, conn } => certs::run(&connect(&conn)?, command).await,
    }
}

fn connect(conn: &Connection) -> Result<ApiClient, ClientError> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let url = conn
        .api_url
        .clone()
        .or_else(|| env("FLY_API_HOSTNAME"))
        .unwrap_or_else(|| client::DEFAULT_API_URL.into());
    let token = conn
        .token
        .clone()
        .or_else(|| env("FLY_API_TOKEN"))
        .or_else(token_from_data_dir)
        .ok_or_else(|| {
            ClientError::Usage(
                "no API token: pass --token or set EDGEWAKE_API_TOKEN or FLY_API_TOKEN".into(),
            )
        })?;
    Ok(ApiClient::new(client::base_url(&url)?, token))
}

/// The token a local `edgewake serve` generated in its default data dir.
fn token_from_data_dir() -> Option<String> {
    let path = PathBuf::from(crate::config::DEFAULT_DATA_DIR).join(crate::api::auth::TOKEN_FILE);
    let token = std::fs::read_to_string(path).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}
