//! `edgewake certs …`: hostnames of an app and their certificates over the API, as
//! flyctl's `fly certs` (`add`, `import`, `list`, `show`, `check`, `remove`); and
//! `generate`, which writes development certificates into a local certs dir.

use super::client::{ApiClient, ClientError};
use super::table::{self, text};
use clap::Subcommand;
use http::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A hostname of an app.
#[derive(clap::Args, Debug)]
pub struct HostRef {
    /// The hostname (a wildcard as `*.example.com`).
    pub host: String,
    /// The app.
    #[arg(short, long, env = "FLY_APP")]
    pub app: String,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Add a hostname to an app; its certificate is ordered by ACME.
    Add(HostRef),
    /// Add a hostname to an app with your own certificate (served over an ACME one).
    Import {
        #[command(flatten)]
        host: HostRef,
        /// PEM chain, leaf first.
        #[arg(long)]
        fullchain: PathBuf,
        /// PEM private key.
        #[arg(long)]
        private_key: PathBuf,
    },
    /// List an app's hostnames and their certificates.
    #[command(visible_alias = "ls")]
    List {
        /// The app.
        #[arg(short, long, env = "FLY_APP")]
        app: String,
    },
    /// Show a hostname's certificates and its ACME status.
    Show(HostRef),
    /// Show a hostname's status and DNS; a failed order is retried now.
    Check(HostRef),
    /// Remove a hostname and its certificates from an app.
    #[command(visible_aliases = ["rm", "delete"])]
    Remove(HostRef),
    /// Write a local CA (made once) and a certificate it signs for each HOST into the
    /// certs dir (`*.example.com` becomes `_.example.com.crt`). Works locally, no API.
    Generate {
        /// Names the certificate is for: `app.localhost`, `*.example.com`, `localhost`.
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Where to write the files [default: the config's tls.certs_dir, which the
        /// server reads]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn path(app: &str, rest: &str) -> String {
    format!("/v1/apps/{app}/certificates{rest}")
}

/// The hostname as one path segment (`*` escaped, as Fly asks).
fn host_path(r: &HostRef, rest: &str) -> String {
    path(&r.app, &format!("/{}{rest}", r.host.replace('*', "%2A")))
}

/// Runs a command against the API.
pub async fn run(client: &ApiClient, command: CertsCommand) -> Result<(), ClientError> {
    match command {
        CertsCommand::Add(r) => {
            let body = json!({"hostname": r.host});
            let shown = client
                .json(Method::POST, &path(&r.app, "/acme"), Some(&body))
                .await?;
            println!(
                "Added {} to app {}; its certificate is being ordered",
                r.host, r.app
            );
            print!("{}", detail_block(&shown));
        }
        CertsCommand::Import {
            host,
            fullchain,
            private_key,
        } => {
            let body = json!({
                "hostname": host.host,
                "fullchain": read(&fullchain)?,
                "private_key": read(&private_key)?,
            });
            let shown = client
                .json(Method::POST, &path(&host.app, "/custom"), Some(&body))
                .await?;
            println!(
                "Imported a certificate for {} into app {}",
                host.host, host.app
            );
            print!("{}", detail_block(&shown));
        }
        CertsCommand::List { app } => {
            let listed = client.json(Method::GET, &path(&app, ""), None).await?;
            let rows: Vec<Vec<String>> = listed["certificates"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(summary_row)
                .collect();
            print!(
                "{}",
                table::render(&["HOST", "STATUS", "SOURCE", "ADDED"], &rows)
            );
        }
        CertsCommand::Show(r) => {
            let shown = client.json(Method::GET, &host_path(&r, ""), None).await?;
            print!("{}", detail_block(&shown));
        }
        CertsCommand::Check(r) => {
            let shown = client
                .json(Method::POST, &host_path(&r, "/check"), None)
                .await?;
            print!("{}", detail_block(&shown));
            let resolved = &shown["dns_records"]["resolved_addresses"];
            println!("  {:<10} = {}", "Resolves", join(resolved));
        }
        CertsCommand::Remove(r) => {
            client
                .call(Method::DELETE, &host_path(&r, ""), None)
                .await?;
            println!("Removed {} from app {}", r.host, r.app);
        }
        CertsCommand::Generate { hosts, dir } => {
            let dir = dir.unwrap_or_else(|| crate::config::DEFAULT_CERTS_DIR.into());
            generate(&hosts, &dir)?
        }
    }
    Ok(())
}

fn read(file: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(file)
        .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", file.display())))
}

fn join(list: &Value) -> String {
    let items: Vec<String> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect();
    items.join(", ")
}

fn summary_row(cert: &Value) -> Vec<String> {
    let source = match (
        &cert["has_custom_certificate"],
        &cert["has_fly_certificate"],
    ) {
        (Value::Bool(true), _) => "custom",
        (_, Value::Bool(true)) => "acme",
        _ if cert["acme_requested"] == true => "acme (ordering)",
        _ => "",
    };
    vec![
        text(cert, "hostname"),
        text(cert, "status"),
        source.to_string(),
        text(cert, "created_at"),
    ]
}

/// A hostname's detail as `key = value` lines, then its certificates and failures.
fn detail_block(detail: &Value) -> String {
    let mut out = String::new();
    for (key, field) in [
        ("Hostname", "hostname"),
        ("Status", "status"),
        ("Configured", "configured"),
        ("ACME", "acme_requested"),
        ("Next try", "next_attempt_at"),
    ] {
        out.push_str(&format!("  {key:<10} = {}\n", text(detail, field)));
    }
    for cert in detail["certificates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let source = match cert["source"].as_str() {
            Some("fly") => "acme",
            _ => "custom",
        };
        out.push_str(&format!(
            "  {:<10} = {} by {}, expires {}\n",
            source,
            text(cert, "status"),
            text(cert, "issuer"),
            text(cert, "expires_at")
        ));
    }
    for error in detail["validation_errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "  {:<10} = {} {}\n",
            "Failed",
            text(error, "timestamp"),
            text(error, "message")
        ));
    }
    out
}

/// `generate`: development certificates, written locally.
pub fn generate(hosts: &[String], dir: &Path) -> Result<(), ClientError> {
    let ca =
        crate::tls::dev_ca::generate(dir, hosts).map_err(|e| ClientError::Usage(e.to_string()))?;
    for host in hosts {
        let stem = crate::tls::dev_ca::stem_for_host(host);
        println!(
            "wrote {0}/{stem}.crt and {0}/{stem}.key for {host}",
            dir.display()
        );
    }
    println!("signed by the development CA {}", ca.display());
    println!(
        "trust it for one command:  curl --cacert {} https://<app>.localhost/",
        ca.display()
    );
    println!(
        "or system-wide (Debian):   cp {} /usr/local/share/ca-certificates/ && update-ca-certificates",
        ca.display()
    );
    println!("a running edgewake picks the new files up on SIGHUP");
    Ok(())
}
