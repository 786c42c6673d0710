//! Machine output: `machine logs ID [--follow]` as written, and `logs -a APP`, every
//! machine of an app followed at once, each line stamped with the time it arrived, the
//! machine and its region (as `fly logs` prints them).

use super::client::{ApiClient, ClientError, api_error};
use super::commands::{machine_path, machines_path};
use super::table::text;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// How often `logs -a` looks for machines created since it started.
const NEW_MACHINE_INTERVAL: Duration = Duration::from_secs(2);
/// Lines waiting to be printed before followers wait for the printer.
const LINE_QUEUE: usize = 1024;

/// `machine logs [--follow]`: prints the output as it arrives. `path` is the machine's.
pub async fn machine_logs(client: &ApiClient, path: &str, follow: bool) -> Result<(), ClientError> {
    let mut body = open(client, &format!("{path}/logs?follow={follow}")).await?;
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

/// The body of a log answer, or the API's error.
async fn open(client: &ApiClient, path: &str) -> Result<Incoming, ClientError> {
    let response = client.send(Method::GET, path, None).await?;
    let status = response.status();
    let body = response.into_body();
    if status.is_success() {
        return Ok(body);
    }
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Err(api_error(status, &bytes))
}

/// A machine whose output is printed, and how its lines begin.
struct Source {
    path: String,
    prefix: String,
}

impl Source {
    fn of(app: &str, machine: &Value) -> Source {
        let id = text(machine, "id");
        Source {
            path: machine_path(app, &id, "/logs"),
            prefix: format!("app[{id}] {}", text(machine, "region")),
        }
    }
}

/// `logs -a APP`: with `follow`, every machine's new output as it comes, machines
/// created meanwhile included, until interrupted; without, what each wrote so far.
pub async fn app_logs(client: &ApiClient, app: &str, follow: bool) -> Result<(), ClientError> {
    let machines = list(client, app).await?;
    if !follow {
        for machine in &machines {
            let source = Source::of(app, machine);
            let bytes = client.call(Method::GET, &source.path, None).await?;
            for line in String::from_utf8_lossy(&bytes).lines() {
                println!("{} {line}", source.prefix);
            }
        }
        return Ok(());
    }
    let client = Arc::new(client.clone());
    let (lines, mut printed) = mpsc::channel::<String>(LINE_QUEUE);
    let mut seen = HashSet::new();
    for machine in &machines {
        seen.insert(text(machine, "id"));
        // From the end: what was written before is not stamped with a time it lacks.
        let source = Source::of(app, machine);
        let offset = client.call(Method::GET, &source.path, None).await?.len();
        tokio::spawn(follow_one(client.clone(), source, offset, lines.clone()));
    }
    let watcher = tokio::spawn(join_new_machines(client, app.to_string(), seen, lines));
    eprintln!(
        "Following {} machine(s) of {app}; machines created from now on join in (Ctrl-C to stop)",
        machines.len()
    );
    let mut stdout = std::io::stdout();
    while let Some(line) = printed.recv().await {
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
    watcher.abort();
    Ok(())
}

async fn list(client: &ApiClient, app: &str) -> Result<Vec<Value>, ClientError> {
    let list = client.json(Method::GET, &machines_path(app), None).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// Follows machines created after `logs` started, from their first line.
async fn join_new_machines(
    client: Arc<ApiClient>,
    app: String,
    mut seen: HashSet<String>,
    lines: mpsc::Sender<String>,
) {
    loop {
        tokio::time::sleep(NEW_MACHINE_INTERVAL).await;
        let Ok(machines) = list(&client, &app).await else {
            return;
        };
        for machine in machines {
            if seen.insert(text(&machine, "id")) {
                let source = Source::of(&app, &machine);
                tokio::spawn(follow_one(client.clone(), source, 0, lines.clone()));
            }
        }
    }
}

/// Sends each complete line of one machine's output, stamped, until it is destroyed.
async fn follow_one(
    client: Arc<ApiClient>,
    source: Source,
    offset: usize,
    lines: mpsc::Sender<String>,
) {
    let path = format!("{}?follow=true&offset={offset}", source.path);
    let Ok(mut body) = open(&client, &path).await else {
        return;
    };
    let mut partial = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else {
            continue;
        };
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let stamped = format!("{} {} {line}", now(), source.prefix);
            if lines.send(stamped).await.is_err() {
                return;
            }
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
