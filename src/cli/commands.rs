//! What each client command asks the API and prints.

use super::client::{ApiClient, ClientError, api_error};
use super::ports::{PortSpec, services};
use super::table::{self, text};
use super::{AppsCommand, MachineCommand, MachineRef};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use std::io::Write;

/// `machine run IMAGE`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The image (a name in the edge's image catalog).
    pub image: String,
    #[arg(short, long, env = "FLY_APP")]
    pub app: String,
    /// The machine's name [default: generated].
    #[arg(long)]
    pub name: Option<String>,
    /// The region [default: the edge's].
    #[arg(long)]
    pub region: Option<String>,
    /// Environment variable, `KEY=VALUE` (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Public port, `port[:machinePort][/protocol[:handler...]]` (repeatable).
    #[arg(short, long = "port", value_name = "SPEC")]
    pub ports: Vec<String>,
    /// Create it without starting it.
    #[arg(long)]
    pub skip_launch: bool,
}

fn machines_path(app: &str) -> String {
    format!("/v1/apps/{app}/machines")
}

fn machine_path(m: &MachineRef, rest: &str) -> String {
    format!("/v1/apps/{}/machines/{}{rest}", m.app, m.id)
}

/// `status -a APP`: the app, then its machines.
pub async fn status(client: &ApiClient, app: &str) -> Result<(), ClientError> {
    let shown = client
        .json(Method::GET, &format!("/v1/apps/{app}"), None)
        .await?;
    let machines = client.json(Method::GET, &machines_path(app), None).await?;
    let machines = machines.as_array().cloned().unwrap_or_default();
    print!("{}", app_block(&shown));
    println!();
    println!("Machines");
    print!("{}", table::machines(&machines));
    Ok(())
}

fn app_block(app: &Value) -> String {
    let owner = text(&app["organization"], "slug");
    let lines = [
        ("Name", text(app, "name")),
        ("Owner", owner),
        ("Status", text(app, "status")),
        ("Machines", text(app, "machine_count")),
    ];
    let mut out = String::from("App\n");
    for (key, value) in lines {
        out.push_str(&format!("  {key:<8} = {value}\n"));
    }
    out
}

pub async fn apps(client: &ApiClient, command: AppsCommand) -> Result<(), ClientError> {
    match command {
        AppsCommand::Create { name, org } => {
            let body = json!({"app_name": name, "org_slug": org});
            let app = client.json(Method::POST, "/v1/apps", Some(&body)).await?;
            println!("Created app {} in org {org}", text(&app, "name"));
        }
        AppsCommand::List { org } => {
            let query = org.map_or(String::new(), |o| format!("?org_slug={o}"));
            let list = client
                .json(Method::GET, &format!("/v1/apps{query}"), None)
                .await?;
            let rows: Vec<Vec<String>> = list["apps"]
                .as_array()
                .map(|apps| {
                    apps.iter()
                        .map(|a| vec![text(a, "name"), text(a, "machine_count")])
                        .collect()
                })
                .unwrap_or_default();
            print!("{}", table::render(&["NAME", "MACHINES"], &rows));
        }
        AppsCommand::Destroy { name, force } => {
            let path = format!("/v1/apps/{name}?force={force}");
            client.call(Method::DELETE, &path, None).await?;
            println!("Destroyed app {name}");
        }
    }
    Ok(())
}

pub async fn machine(client: &ApiClient, command: MachineCommand) -> Result<(), ClientError> {
    match command {
        MachineCommand::Run(args) => run(client, args).await,
        MachineCommand::List { app } => {
            let list = client.json(Method::GET, &machines_path(&app), None).await?;
            print!(
                "{}",
                table::machines(list.as_array().map_or(&[][..], |v| v))
            );
            Ok(())
        }
        MachineCommand::Status(m) => show(client, &m).await,
        MachineCommand::Start(m) => {
            let answer = client
                .json(Method::POST, &machine_path(&m, "/start"), None)
                .await?;
            println!(
                "Starting machine {} (was {})",
                m.id,
                text(&answer, "previous_state")
            );
            Ok(())
        }
        MachineCommand::Stop(m) => {
            client
                .call(Method::POST, &machine_path(&m, "/stop"), None)
                .await?;
            println!("Stopped machine {}", m.id);
            Ok(())
        }
        MachineCommand::Destroy { machine: m, force } => {
            let path = machine_path(&m, &format!("?force={force}"));
            client.call(Method::DELETE, &path, None).await?;
            println!("Destroyed machine {}", m.id);
            Ok(())
        }
        MachineCommand::Wait {
            machine: m,
            state,
            timeout,
        } => wait(client, &m, &state, timeout).await,
        MachineCommand::Logs { machine: m, follow } => logs(client, &m, follow).await,
    }
}

/// The config `machine run` sends: image, env, and services from the ports.
fn run_config(args: &RunArgs) -> Result<Value, ClientError> {
    let mut env = Map::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ClientError::Usage(format!("--env `{pair}`: use KEY=VALUE")))?;
        env.insert(key.to_string(), Value::String(value.to_string()));
    }
    let specs = args
        .ports
        .iter()
        .map(|p| PortSpec::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"image": args.image, "env": env, "services": services(&specs)}))
}

async fn run(client: &ApiClient, args: RunArgs) -> Result<(), ClientError> {
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
async fn show(client: &ApiClient, m: &MachineRef) -> Result<(), ClientError> {
    let machine = client.json(Method::GET, &machine_path(m, ""), None).await?;
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
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    let mut row = vec![event_time(e)];
                    row.extend(["type", "status", "source"].iter().map(|f| text(e, f)));
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        table::render(&["TIMESTAMP", "TYPE", "STATUS", "SOURCE"], &rows)
    );
    Ok(())
}

/// An event's millisecond timestamp as RFC 3339.
fn event_time(event: &Value) -> String {
    let millis = event["timestamp"].as_u64().unwrap_or(0);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_millis(at).to_string()
}

/// `machine wait`: the machine's current version is sent along (Fly needs it for
/// `stopped`).
async fn wait(
    client: &ApiClient,
    m: &MachineRef,
    state: &str,
    timeout: u32,
) -> Result<(), ClientError> {
    let machine = client.json(Method::GET, &machine_path(m, ""), None).await?;
    let version = text(&machine, "instance_id");
    let query = format!("/wait?state={state}&timeout={timeout}&instance_id={version}");
    let answer = client
        .json(Method::GET, &machine_path(m, &query), None)
        .await?;
    println!("Machine {} is {}", m.id, text(&answer, "state"));
    Ok(())
}

/// `machine logs [--follow]`: prints the output as it arrives.
async fn logs(client: &ApiClient, m: &MachineRef, follow: bool) -> Result<(), ClientError> {
    let path = machine_path(m, &format!("/logs?follow={follow}"));
    let response = client.send(Method::GET, &path, None).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(api_error(status, &bytes));
    }
    let mut stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Usage(format!("the log stream broke: {e}")))?;
        if let Some(data) = frame.data_ref() {
            let _ = stdout.write_all(data);
            let _ = stdout.flush();
        }
    }
    Ok(())
}
