//! What the commands share: `status`, JSON output, and finding a machine by id or name.

use super::Output;
use super::client::{ApiClient, ClientError};
use super::table::{self, text};
use http::{Method, StatusCode};
use serde_json::Value;

pub fn machines_path(app: &str) -> String {
    format!("/v1/apps/{app}/machines")
}

/// `/v1/apps/{app}/machines/{id}{rest}`.
pub fn machine_path(app: &str, id: &str, rest: &str) -> String {
    format!("/v1/apps/{app}/machines/{id}{rest}")
}

/// Pretty JSON on stdout.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// The machine `given` names in `app`: by id, else by name.
pub async fn find_machine(
    client: &ApiClient,
    app: &str,
    given: &str,
) -> Result<Value, ClientError> {
    match client
        .json(Method::GET, &machine_path(app, given, ""), None)
        .await
    {
        Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => {}
        other => return other,
    }
    let machines = client.json(Method::GET, &machines_path(app), None).await?;
    machines
        .as_array()
        .and_then(|all| all.iter().find(|m| m["name"] == given))
        .cloned()
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "machine `{given}` not found in app {app}, by id or by name \
                 (`edgewake machine list -a {app}` lists them)"
            ))
        })
}

/// `status -a APP`: the app, then its machines.
pub async fn status(client: &ApiClient, app: &str, output: Output) -> Result<(), ClientError> {
    let mut shown = client
        .json(Method::GET, &format!("/v1/apps/{app}"), None)
        .await?;
    let machines = client.json(Method::GET, &machines_path(app), None).await?;
    if output.json {
        shown["machines"] = machines;
        print_json(&shown);
        return Ok(());
    }
    let machines = machines.as_array().map_or(&[][..], |v| v);
    print!("{}", app_block(&shown));
    println!();
    println!("Machines");
    print!("{}", table::machines(machines));
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

/// A millisecond timestamp as RFC 3339.
pub fn millis_time(millis: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_millis(at).to_string()
}
