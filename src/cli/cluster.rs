//! `edgewake cluster status`: the nodes of the cluster the config's `[cluster]` names,
//! read from its NATS servers (not from a node's API), so it answers with every node
//! down.

use crate::cluster::ClusterError;
use crate::config::Located;
use crate::config::locate::LoadError;
use clap::Subcommand;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("{0} has no [cluster] section: this is a single node")]
    NoCluster(String),
    #[error("{0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot print the nodes as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every node that has sent a heartbeat: name, region, backhaul address, last
    /// heartbeat, machines hosted; read from the cluster's NATS servers.
    Status {
        /// Print JSON instead of a table.
        #[arg(short, long)]
        json: bool,
    },
}

/// Runs a `cluster` command.
pub fn run(command: ClusterCommand, located: &Located) -> Result<(), StatusError> {
    let ClusterCommand::Status { json } = command;
    let config = located.load()?;
    let Some(cluster) = config.cluster else {
        return Err(StatusError::NoCluster(located.to_string()));
    };
    let runtime = tokio::runtime::Runtime::new().map_err(StatusError::Runtime)?;
    let nodes = runtime.block_on(crate::cluster::status::read(&cluster))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.region.clone(),
                n.backhaul.to_string(),
                format!("{} ({} ms ago)", n.last_heartbeat, n.heartbeat_age_ms),
                if n.up { "up" } else { "down" }.to_string(),
                n.machines.to_string(),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "REGION",
        "BACKHAUL",
        "LAST HEARTBEAT",
        "STATE",
        "MACHINES",
    ];
    print!("{}", super::table::render(&header, &rows));
    Ok(())
}
