//! `machine …` (also `machines`, `m`): run, list, status, start, stop, destroy, wait,
//! logs here; restart, update, exec, cordon, uncordon, clone and leases in
//! `operations`.

use super::client::{ApiClient, ClientError};
use super::commands::{find_machine, machine_path, machines_path, millis_time, print_json};
use super::operations::{self, CloneArgs, ExecArgs, LeasesCommand, RestartArgs, UpdateArgs};
use super::ports::{PortSpec, services};
use super::table::{self, text};
use super::{Output, logs};
use clap::Subcommand;
use http::Method;
use serde_json::{Map, Value, json};
use std::process::ExitCode;

/// A machine of an app, by id or name.
#[derive(clap::Args, Debug)]
pub struct MachineRef {
    /// The machine: its id or its name.
    #[arg(value_name = "ID|NAME")]
    pub machine: String,
    /// The app.
    #[arg(short, long, env = "FLY_APP")]
    pub app: String,
}

impl MachineRef {
    /// The machine's JSON, found by id or name.
    pub async fn find(&self, client: &ApiClient) -> Result<Value, ClientError> {
        find_machine(client, &self.app, &self.machine).await
    }

    /// The machine's id (looked up when a name was given) and its API path + `rest`.
    pub async fn path(&self, client: &ApiClient, rest: &str) -> Result<String, ClientError> {
        let machine = self.find(client).await?;
        Ok(machine_path(&self.app, &text(&machine, "id"), rest))
    }
}

/// `machine run IMAGE`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The image: with the process driver, a name in the image catalog
    /// (`[images."NAME"]` in the config); with the sandbox driver, an OCI image.
    pub image: String,
    /// The app.
    #[arg(short, long, env = "FLY_APP")]
    pub app: String,
    /// The machine's name [default: generated].
    #[arg(short, long)]
    pub name: Option<String>,
    /// The region [default: the edge's].
    #[arg(short, long)]
    pub region: Option<String>,
    /// Environment variable, `KEY=VALUE` (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A port the machine listens on, served by the edge on 80 (http) and 443 (tls, http)
    /// (`-p 8080`); or flyctl's `port[:machinePort][/protocol[:handler...]]`
    /// (`-p 443:8080/tcp:tls:http`). Repeatable.
    #[arg(short, long = "port", value_name = "PORT")]
    pub ports: Vec<String>,
    /// Create it without starting it.
    #[arg(long)]
    pub skip_launch: bool,
}

#[derive(Subcommand, Debug)]
pub enum MachineCommand {
    /// Create and start a machine running IMAGE.
    Run(RunArgs),
    /// List an app's machines.
    #[command(visible_alias = "ls")]
    List {
        /// The app.
        #[arg(short, long, env = "FLY_APP")]
        app: String,
        #[command(flatten)]
        output: Output,
        /// Print only the ids, one a line.
        #[arg(short, long, conflicts_with = "json")]
        quiet: bool,
    },
    /// Show a machine and its events.
    Status {
        #[command(flatten)]
        machine: MachineRef,
        #[command(flatten)]
        output: Output,
    },
    /// Start a stopped machine.
    Start(MachineRef),
    /// Stop a machine (waits until it has exited).
    Stop(MachineRef),
    /// Stop a started machine and start it again.
    Restart(RestartArgs),
    /// Change a machine's image, environment or size; it restarts on the new config.
    Update(UpdateArgs),
    /// Run a command inside a started machine: `machine exec ID -a APP -- ls -l /`.
    Exec(ExecArgs),
    /// Keep the edge from sending requests to a machine (and from waking it).
    Cordon(MachineRef),
    /// Let the edge send requests to a cordoned machine again.
    Uncordon(MachineRef),
    /// Create a new machine with the config of an existing one.
    Clone(CloneArgs),
    /// Show who holds a machine's lease.
    Leases {
        #[command(subcommand)]
        command: LeasesCommand,
    },
    /// Destroy a machine.
    #[command(visible_aliases = ["rm", "remove"])]
    Destroy {
        #[command(flatten)]
        machine: MachineRef,
        /// Destroy it even while it runs (it is stopped first).
        #[arg(short, long)]
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

pub async fn run(client: &ApiClient, command: MachineCommand) -> Result<ExitCode, ClientError> {
    match command {
        MachineCommand::Run(args) => run_machine(client, args).await?,
        MachineCommand::List { app, output, quiet } => list(client, &app, output, quiet).await?,
        MachineCommand::Status { machine, output } => show(client, &machine, output).await?,
        MachineCommand::Start(m) => {
            let path = m.path(client, "/start").await?;
            let answer = client.json(Method::POST, &path, None).await?;
            let was = text(&answer, "previous_state");
            println!("Starting machine {} (was {was})", m.machine);
        }
        MachineCommand::Stop(m) => {
            client
                .call(Method::POST, &m.path(client, "/stop").await?, None)
                .await?;
            println!("Stopped machine {}", m.machine);
        }
        MachineCommand::Restart(args) => operations::restart(client, args).await?,
        MachineCommand::Update(args) => operations::update(client, args).await?,
        MachineCommand::Exec(args) => return operations::exec(client, args).await,
        MachineCommand::Cordon(m) => operations::cordon(client, &m, true).await?,
        MachineCommand::Uncordon(m) => operations::cordon(client, &m, false).await?,
        MachineCommand::Clone(args) => operations::clone(client, args).await?,
        MachineCommand::Leases { command } => operations::leases(client, command).await?,
        MachineCommand::Destroy { machine: m, force } => {
            let path = m.path(client, &format!("?force={force}")).await?;
            let what = format!("machine {} is running", m.machine);
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| super::apps::needs_force(e, &what))?;
            println!("Destroyed machine {}", m.machine);
        }
        MachineCommand::Wait {
            machine: m,
            state,
            timeout,
        } => wait(client, &m, &state, timeout).await?,
        MachineCommand::Logs { machine: m, follow } => {
            logs::machine_logs(client, &m.path(client, "").await?, follow).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(
    client: &ApiClient,
    app: &str,
    output: Output,
    quiet: bool,
) -> Result<(), ClientError> {
    let list = client.json(Method::GET, &machines_path(app), None).await?;
    let machines = list.as_array().map_or(&[][..], |v| v);
    if output.json {
        print_json(&list);
    } else if quiet {
        machines.iter().for_each(|m| println!("{}", text(m, "id")));
    } else {
        print!("{}", table::machines(machines));
    }
    Ok(())
}

/// The config `machine run` sends: image, env, and services from the ports.
fn run_config(args: &RunArgs) -> Result<Value, ClientError> {
    let env = env_pairs(&args.env)?;
    let specs = args
        .ports
        .iter()
        .map(|p| PortSpec::parse_flag(p))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    Ok(json!({"image": args.image, "env": env, "services": services(&specs)}))
}

/// `KEY=VALUE` flags as a JSON object.
pub fn env_pairs(pairs: &[String]) -> Result<Map<String, Value>, ClientError> {
    let mut env = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ClientError::Usage(format!("--env `{pair}`: use KEY=VALUE")))?;
        env.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(env)
}

async fn run_machine(client: &ApiClient, args: RunArgs) -> Result<(), ClientError> {
    let mut body = json!({"config": run_config(&args)?, "skip_launch": args.skip_launch});
    if let Some(name) = &args.name {
        body["name"] = name.as_str().into();
    }
    if let Some(region) = &args.region {
        body["region"] = region.as_str().into();
    }
    let machine = client
        .json(Method::POST, &machines_path(&args.app), Some(&body))
        .await?;
    println!(
        "Created machine {} ({}) in {}",
        text(&machine, "id"),
        text(&machine, "name"),
        text(&machine, "region")
    );
    Ok(())
}

/// `machine status`: the machine's facts, then its events.
async fn show(client: &ApiClient, m: &MachineRef, output: Output) -> Result<(), ClientError> {
    let machine = m.find(client).await?;
    if output.json {
        print_json(&machine);
        return Ok(());
    }
    let facts = [
        ("ID", "id"),
        ("Name", "name"),
        ("State", "state"),
        ("Region", "region"),
        ("Version", "instance_id"),
        ("Private IP", "private_ip"),
        ("Cordoned", "cordoned"),
        ("Created", "created_at"),
        ("Updated", "updated_at"),
    ];
    println!("Machine");
    for (label, field) in facts {
        println!("  {label:<10} = {}", text(&machine, field));
    }
    println!("  {:<10} = {}", "Image", text(&machine["config"], "image"));
    println!();
    println!("Events");
    let rows: Vec<Vec<String>> = machine["events"]
        .as_array()
        .map_or(&[][..], |v| v)
        .iter()
        .map(|e| {
            let mut row = vec![millis_time(e["timestamp"].as_u64().unwrap_or(0))];
            row.extend(["type", "status", "source"].iter().map(|f| text(e, f)));
            row
        })
        .collect();
    print!(
        "{}",
        table::render(&["TIMESTAMP", "TYPE", "STATUS", "SOURCE"], &rows)
    );
    Ok(())
}

/// `machine wait`: the machine's current version is sent along (Fly needs it for
/// `stopped`).
async fn wait(
    client: &ApiClient,
    m: &MachineRef,
    state: &str,
    timeout: u32,
) -> Result<(), ClientError> {
    let machine = m.find(client).await?;
    let (id, version) = (text(&machine, "id"), text(&machine, "instance_id"));
    let query = format!("/wait?state={state}&timeout={timeout}&instance_id={version}");
    let answer = client
        .json(Method::GET, &machine_path(&m.app, &id, &query), None)
        .await?;
    println!("Machine {} is {}", m.machine, text(&answer, "state"));
    Ok(())
}
