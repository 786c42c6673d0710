//! `apps create|list|destroy`.

use super::Output;
use super::client::{ApiClient, ClientError};
use super::table::{self, text};
use clap::Subcommand;
use http::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        /// The app's name: a DNS label (lowercase letters, digits, dashes); it is reached
        /// at <name>.<domain>.
        name: String,
        /// The organization that owns it.
        #[arg(long, default_value = "personal")]
        org: String,
    },
    /// List apps.
    #[command(visible_alias = "ls")]
    List {
        /// Only the apps of this organization.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        output: Output,
        /// Print only the names, one a line.
        #[arg(short, long, conflicts_with = "json")]
        quiet: bool,
    },
    /// Destroy an app and its machines.
    #[command(visible_aliases = ["rm", "delete"])]
    Destroy {
        /// The app.
        name: String,
        /// Also stop and destroy machines that are running.
        #[arg(short, long)]
        force: bool,
    },
}

pub async fn run(client: &ApiClient, command: AppsCommand) -> Result<(), ClientError> {
    match command {
        AppsCommand::Create { name, org } => {
            let body = json!({"app_name": name, "org_slug": org});
            let app = client.json(Method::POST, "/v1/apps", Some(&body)).await?;
            println!("Created app {} in org {org}", text(&app, "name"));
        }
        AppsCommand::List { org, output, quiet } => {
            let query = org.map_or(String::new(), |o| format!("?org_slug={o}"));
            let list = client
                .json(Method::GET, &format!("/v1/apps{query}"), None)
                .await?;
            let apps = list["apps"].as_array().map_or(&[][..], |v| v);
            if output.json {
                super::commands::print_json(&list);
            } else if quiet {
                apps.iter().for_each(|a| println!("{}", text(a, "name")));
            } else {
                print!("{}", apps_table(apps));
            }
        }
        AppsCommand::Destroy { name, force } => {
            let path = format!("/v1/apps/{name}?force={force}");
            client
                .call(Method::DELETE, &path, None)
                .await
                .map_err(|e| needs_force(e, &format!("app {name} has running machines")))?;
            println!("Destroyed app {name}");
        }
    }
    Ok(())
}

fn apps_table(apps: &[Value]) -> String {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| vec![text(a, "name"), text(a, "machine_count")])
        .collect();
    table::render(&["NAME", "MACHINES"], &rows)
}

/// The API's refusal to destroy something running, said in the CLI's words.
pub fn needs_force(error: ClientError, what: &str) -> ClientError {
    match error {
        ClientError::Api { status, message }
            if message.contains("force")
                && (status == StatusCode::CONFLICT
                    || status == StatusCode::PRECONDITION_FAILED) =>
        {
            ClientError::Usage(format!("{what}: stop it first, or pass --force"))
        }
        other => other,
    }
}
