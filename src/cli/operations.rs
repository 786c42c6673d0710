//! `machine restart|update|exec|cordon|uncordon|clone|leases`.

use super::client::{ApiClient, ClientError};
use super::commands::{machine_path, machines_path};
use super::machine::{MachineRef, env_pairs};
use super::table::{self, text};
use clap::Subcommand;
use http::{Method, StatusCode};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    #[command(flatten)]
    pub machine: MachineRef,
    /// The signal that stops it [default: the machine's stop signal, else SIGTERM].
    #[arg(short, long)]
    pub signal: Option<String>,
    /// How long it may take to stop before SIGKILL (`10s`).
    #[arg(long, value_name = "DURATION")]
    pub time: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub machine: MachineRef,
    /// A new image.
    #[arg(short, long)]
    pub image: Option<String>,
    /// Set an environment variable, `KEY=VALUE` (repeatable; others are kept).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Memory in MB.
    #[arg(long, value_name = "MB")]
    pub vm_memory: Option<u64>,
    /// Number of CPUs.
    #[arg(long, value_name = "N")]
    pub vm_cpus: Option<u32>,
    /// Apply the config without starting the machine.
    #[arg(long)]
    pub skip_start: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub machine: MachineRef,
    /// Seconds the command may run before it is killed (at most 300).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct CloneArgs {
    #[command(flatten)]
    pub machine: MachineRef,
    /// The new machine's name [default: generated].
    #[arg(short, long)]
    pub name: Option<String>,
    /// The new machine's region [default: the original's].
    #[arg(short, long)]
    pub region: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum LeasesCommand {
    /// Show a machine's lease, if it has one.
    View(MachineRef),
}

pub async fn restart(client: &ApiClient, args: RestartArgs) -> Result<(), ClientError> {
    let mut query = Vec::new();
    if let Some(signal) = &args.signal {
        query.push(format!("signal={signal}"));
    }
    if let Some(time) = &args.time {
        query.push(format!("timeout={time}"));
    }
    let rest = format!("/restart?{}", query.join("&"));
    let path = args.machine.path(client, &rest).await?;
    client.call(Method::POST, &path, None).await?;
    println!("Restarted machine {}", args.machine.machine);
    Ok(())
}

pub async fn update(client: &ApiClient, args: UpdateArgs) -> Result<(), ClientError> {
    let machine = args.machine.find(client).await?;
    let mut config = machine["config"].clone();
    if let Some(image) = &args.image {
        config["image"] = image.as_str().into();
    }
    let env = env_pairs(&args.env)?;
    if !env.is_empty() {
        if !config["env"].is_object() {
            config["env"] = json!({});
        }
        for (key, value) in env {
            config["env"][key] = value;
        }
    }
    if let Some(memory) = args.vm_memory {
        config["guest"]["memory_mb"] = memory.into();
    }
    if let Some(cpus) = args.vm_cpus {
        config["guest"]["cpus"] = cpus.into();
    }
    let body = json!({
        "config": config,
        "current_version": machine["instance_id"],
        "skip_launch": args.skip_start,
    });
    let id = text(&machine, "id");
    let updated = client
        .json(
            Method::POST,
            &machine_path(&args.machine.app, &id, ""),
            Some(&body),
        )
        .await?;
    println!(
        "Updated machine {} (version {})",
        args.machine.machine,
        text(&updated, "instance_id")
    );
    Ok(())
}

/// Prints what the command printed, and exits as it did.
pub async fn exec(client: &ApiClient, args: ExecArgs) -> Result<ExitCode, ClientError> {
    let path = args.machine.path(client, "/exec").await?;
    let body = json!({"command": args.command, "timeout": args.timeout});
    let output = client.json(Method::POST, &path, Some(&body)).await?;
    let _ = std::io::stdout().write_all(text(&output, "stdout").as_bytes());
    let _ = std::io::stderr().write_all(text(&output, "stderr").as_bytes());
    let code = output["exit_code"].as_i64().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub async fn cordon(client: &ApiClient, m: &MachineRef, cordon: bool) -> Result<(), ClientError> {
    let action = if cordon { "/cordon" } else { "/uncordon" };
    client
        .call(Method::POST, &m.path(client, action).await?, None)
        .await?;
    match cordon {
        true => println!(
            "Cordoned machine {}: the edge sends it no requests",
            m.machine
        ),
        false => println!("Uncordoned machine {}", m.machine),
    }
    Ok(())
}

pub async fn clone(client: &ApiClient, args: CloneArgs) -> Result<(), ClientError> {
    let original = args.machine.find(client).await?;
    let region = args.region.unwrap_or_else(|| text(&original, "region"));
    let mut body = json!({"config": original["config"], "region": region});
    if let Some(name) = &args.name {
        body["name"] = name.as_str().into();
    }
    let app = &args.machine.app;
    let clone = client
        .json(Method::POST, &machines_path(app), Some(&body))
        .await?;
    println!(
        "Cloned machine {} into {} ({}) in {}",
        text(&original, "id"),
        text(&clone, "id"),
        text(&clone, "name"),
        text(&clone, "region")
    );
    Ok(())
}

pub async fn leases(client: &ApiClient, command: LeasesCommand) -> Result<(), ClientError> {
    let LeasesCommand::View(m) = command;
    let path = m.path(client, "/lease").await?;
    let lease = match client.json(Method::GET, &path, None).await {
        Ok(lease) => lease,
        Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => {
            println!("Machine {} has no lease", m.machine);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let data = &lease["data"];
    let expires = data["expires_at"]
        .as_u64()
        .map(|s| super::commands::millis_time(s * 1000))
        .unwrap_or_else(|| text(data, "expires_at"));
    let row = vec![
        m.machine.clone(),
        text(data, "owner"),
        text(data, "description"),
        expires,
        text(data, "version"),
    ];
    print!(
        "{}",
        table::render(
            &["MACHINE", "OWNER", "DESCRIPTION", "EXPIRES", "VERSION"],
            &[row]
        )
    );
    Ok(())
}
