//! `[cluster]`: this node's place among several edges sharing state on NATS JetStream
//! (the `cluster` module). No `[cluster]` section: a single node, SQLite only. The
//! node's region is `edge.region`.

use super::raw::address;
use super::{Config, ConfigErrors, duration};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A node whose heartbeats stopped this long ago is down: its machines are skipped.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections the backhaul listener holds at once (other edges' pooled
/// connections; apart from the edge's own `max_connections`, so neither side can
/// starve the other).
pub const DEFAULT_MAX_BACKHAUL_CONNECTIONS: usize = 1024;
/// The environment variable holding the cluster's shared secret.
pub const DEFAULT_CLUSTER_SECRET_ENV: &str = "EDGEWAKE_CLUSTER_SECRET";
/// Longest node name (it is a key in the cluster's buckets and a DNS-like label).
const MAX_NODE_NAME: usize = 63;
/// Heartbeats go out every second; a shorter timeout would mark live nodes down.
const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// The section, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Unique name of this node (`syd-1`): the key of its heartbeat and its machines.
    pub node: String,
    /// The NATS servers, tried in turn (`nats://host:port`).
    pub nats: Vec<String>,
    /// This node's backhaul listener, for requests other edges send to its machines.
    pub backhaul: SocketAddr,
    /// The address other nodes reach this node at (backhaul and API); default: the
    /// backhaul's own address, which must then not be unspecified.
    pub advertise: Option<IpAddr>,
    /// The environment variable holding the shared secret (read at start).
    pub secret_env: String,
    pub heartbeat_timeout: Duration,
    pub max_backhaul_connections: usize,
}

impl ClusterConfig {
    /// The address other nodes reach this node at.
    pub fn advertised_ip(&self) -> IpAddr {
        self.advertise.unwrap_or(self.backhaul.ip())
    }
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawCluster {
    node: Option<String>,
    nats: Option<Vec<String>>,
    backhaul: Option<String>,
    advertise: Option<String>,
    secret_env: Option<String>,
    heartbeat_timeout: Option<String>,
    max_backhaul_connections: Option<usize>,
}

impl RawCluster {
    /// The typed section; `node`, `nats` and `backhaul` have no default and are noted
    /// when missing.
    pub(super) fn into_cluster(self, errors: &mut ConfigErrors) -> ClusterConfig {
        let mut required = |key: &str, present: bool| {
            if !present {
                errors.push(format!(
                    "`cluster.{key}` is required in a `[cluster]` section"
                ));
            }
        };
        required("node", self.node.is_some());
        required("nats", self.nats.is_some());
        required("backhaul", self.backhaul.is_some());
        let unset = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        ClusterConfig {
            node: self.node.unwrap_or_default(),
            nats: self.nats.unwrap_or_default(),
            backhaul: errors.parsed("cluster.backhaul", self.backhaul, unset, address),
            advertise: self
                .advertise
                .and_then(|text| errors.ok("cluster.advertise", ip(&text))),
            secret_env: self
                .secret_env
                .unwrap_or_else(|| DEFAULT_CLUSTER_SECRET_ENV.into()),
            heartbeat_timeout: errors.parsed(
                "cluster.heartbeat_timeout",
                self.heartbeat_timeout,
                DEFAULT_HEARTBEAT_TIMEOUT,
                duration::parse,
            ),
            max_backhaul_connections: self
                .max_backhaul_connections
                .unwrap_or(DEFAULT_MAX_BACKHAUL_CONNECTIONS),
        }
    }
}

/// An address without a port.
fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an IP address like 203.0.113.7"))
}

impl ClusterConfig {
    /// Checks the section, and it against the rest of `config`.
    pub(super) fn validate(&self, config: &Config, errors: &mut ConfigErrors) {
        let node = &self.node;
        let name_ok = node.len() <= MAX_NODE_NAME
            && node
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !node.is_empty() && !name_ok {
            errors.push(format!(
                "`cluster.node`: `{node}` is not a node name (1-{MAX_NODE_NAME} lowercase letters, digits, `-`, `_`)"
            ));
        }
        self.validate_nats(errors);
        if self.advertise.is_none() && self.backhaul.ip().is_unspecified() {
            errors.push(format!(
                "`cluster.advertise`: required when `cluster.backhaul` listens on {} (other nodes need an address to reach this one)",
                self.backhaul.ip()
            ));
        }
        if self.advertise.is_some_and(|ip| ip.is_unspecified()) {
            errors.push("`cluster.advertise` must be an address other nodes can reach".into());
        }
        if self.secret_env.is_empty() {
            errors.push("`cluster.secret_env` must name an environment variable".into());
        }
        if self.heartbeat_timeout < MIN_HEARTBEAT_TIMEOUT {
            errors.push(format!(
                "`cluster.heartbeat_timeout` must be at least {MIN_HEARTBEAT_TIMEOUT:?} (heartbeats go out every second)"
            ));
        }
        if self.max_backhaul_connections == 0 {
            errors.push("`cluster.max_backhaul_connections` must be at least 1".into());
        }
        let taken = [config.edge.http, config.edge.https, config.api.listen];
        if self.backhaul.port() != 0 && taken.contains(&self.backhaul) {
            errors.push(format!(
                "`cluster.backhaul`: {} is already an edge or API listener",
                self.backhaul
            ));
        }
    }

    fn validate_nats(&self, errors: &mut ConfigErrors) {
        if self.nats.is_empty() {
            errors.push("`cluster.nats` must list at least one NATS server".into());
        }
        for server in &self.nats {
            let scheme_ok = ["nats://", "tls://"].iter().any(|s| server.starts_with(s));
            if !scheme_ok || server.parse::<async_nats::ServerAddr>().is_err() {
                errors.push(format!(
                    "`cluster.nats`: `{server}` is not a server like nats://127.0.0.1:4222"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// A `[cluster]` section as the issue writes it is read into its types.
    #[test]
    fn cluster_section_is_typed() {
        let text = r#"
            [cluster]
            node = "syd-1"
            nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
            backhaul = "0.0.0.0:4281"
            advertise = "203.0.113.7"
            secret_env = "EDGEWAKE_CLUSTER_SECRET"
            heartbeat_timeout = "5s"
        "#;
        let cluster = Config::parse(text).unwrap().cluster.unwrap();
        assert_eq!(cluster.node, "syd-1");
        assert_eq!(cluster.nats.len(), 2);
        assert_eq!(cluster.backhaul.port(), 4281);
        assert_eq!(cluster.advertised_ip().to_string(), "203.0.113.7");
        assert_eq!(cluster.heartbeat_timeout.as_secs(), 5);
        assert_eq!(
            cluster.max_backhaul_connections,
            super::DEFAULT_MAX_BACKHAUL_CONNECTIONS
        );
        assert!(Config::parse("").unwrap().cluster.is_none());
    }

    /// Every wrong or missing key of `[cluster]` is named, all in one report.
    #[test]
    fn cluster_problems_are_named() {
        let text = r#"
            [cluster]
            node = "Syd 1"
            nats = ["http//nowhere"]
            backhaul = "0.0.0.0:4281"
            secret_env = ""
            heartbeat_timeout = "1s"
            max_backhaul_connections = 0
            colour = "blue"
        "#;
        let all = Config::parse(text).unwrap_err().to_string();
        for needle in [
            "`cluster.colour`",
            "`cluster.node`: `Syd 1`",
            "`cluster.nats`: `http//nowhere`",
            "`cluster.advertise`: required",
            "`cluster.secret_env`",
            "`cluster.heartbeat_timeout`",
            "`cluster.max_backhaul_connections` must be at least 1",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        let all = Config::parse("[cluster]\nadvertise = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        for needle in [
            "`cluster.node` is required",
            "`cluster.nats` is required",
            "`cluster.backhaul` is required",
            "`cluster.advertise`: `nowhere`",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }
}
