//! The `edgewake` command: `serve` runs the edge and the Machines API, `reload` makes it
//! read its config again, `check-config` validates the config and lists every problem;
//! the rest are the operator's client commands (`edgewake::cli`).

use clap::{CommandFactory, Parser, Subcommand};
use edgewake::cli::serve::{self, ServeArgs};
use edgewake::config::Located;
use edgewake::server;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Machines that wake on request: a Fly-compatible Machines API and edge proxy",
    after_help = "The config file is --config, else $EDGEWAKE_CONFIG, else \
                  ./config/edgewake.toml, else /etc/edgewake/edgewake.toml; the data dir, \
                  the API's address and its token come from it."
)]
struct Cli {
    /// The config file [default: $EDGEWAKE_CONFIG, else ./config/edgewake.toml, else
    /// /etc/edgewake/edgewake.toml, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge proxy and the Machines API.
    Serve(ServeArgs),
    /// Validate the config file and print every problem in it.
    CheckConfig,
    /// Make the running edgewake read its config and certificates again (SIGHUP to the
    /// pid in its data dir).
    Reload {
        /// The data dir of the edgewake to reload [default: from the config]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// The cluster this node belongs to (`[cluster]` in the config).
    Cluster {
        #[command(subcommand)]
        command: edgewake::cli::cluster::ClusterCommand,
    },
    /// The local image store: import, pull, list and remove images.
    Images(edgewake::cli::images::ImagesArgs),
    #[command(flatten)]
    Client(edgewake::cli::Command),
    /// Print a shell completion script: `source <(edgewake completion bash)`.
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
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

/// Every error ends here as one message on stderr and exit code 1: no backtrace, even
/// with RUST_BACKTRACE set (those are for bugs, which panic).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let located = Located::find(cli.config.as_deref());
    match run(cli.command, located) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, located: Located) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig => return Ok(check_config(&located)),
        Command::Serve(args) => serve::serve(located, args, token_from_env())?,
        Command::Reload { data_dir } => serve::send_reload(&located, data_dir)?,
        Command::Images(args) => {
            let config = located.load()?;
            let registries = server::registry_auth(&config.sandbox.registries);
            if !edgewake::cli::images::run(args, &config.data_dir, registries) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Cluster { command } => edgewake::cli::cluster::run(command, &located)?,
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "edgewake", &mut std::io::stdout());
        }
        Command::Functions => edgewake::functions::run()?,
        Command::SandboxHook { hook } => sandbox_hook(hook)?,
        Command::Client(command) => return Ok(edgewake::cli::run(command, &located)),
    }
    Ok(ExitCode::SUCCESS)
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
    // The message already holds its causes: as a plain message, runc's report of the
    // hook's stderr says them once (a chain would print them twice).
    link.wire(&state).map_err(anyhow::Error::msg)
}

fn check_config(located: &Located) -> ExitCode {
    match located.load() {
        Ok(_) if located.path().is_none() => {
            println!("{located}: the built-in defaults are used");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("{located}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `EDGEWAKE_API_TOKEN`, else Fly's `FLY_API_TOKEN`.
fn token_from_env() -> Option<String> {
    ["EDGEWAKE_API_TOKEN", "FLY_API_TOKEN"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and option of every command a user sees has help text.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "edgewake", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:?}");
    }

    /// The command line is well-formed (clap's own checks: no clashing flags).
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
