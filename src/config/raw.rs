//! The config file as written, and its one conversion into typed values.
//!
//! Values the file holds as text (addresses, durations, ranges, the signal, the driver)
//! are kept as text here, so serde cannot stop at the first bad one: `into_config` parses
//! each once and notes every problem under its key. Every field is optional; an absent
//! one takes its default from the typed `Default`s beside the named constants.

use super::{
    ApiConfig, Config, ConfigErrors, EdgeConfig, GeoConfig, ImageConfig, LimitsConfig,
    MachinesConfig, RegionConfig, RegistryConfig, SandboxConfig, TlsConfig, duration, operator,
};
use crate::addresses::AddressRange;
use crate::signals::parse_signal;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use tracing_subscriber::filter::Targets;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawConfig {
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    edge: RawEdge,
    api: RawApi,
    tls: RawTls,
    geo: GeoConfig,
    machines: RawMachines,
    sandbox: RawSandbox,
    limits: RawLimits,
    regions: Option<Vec<RegionConfig>>,
    images: Option<BTreeMap<String, ImageConfig>>,
    cluster: Option<super::cluster::RawCluster>,
    wake: operator::RawWake,
    no_wake: operator::RawNoWake,
    replay: operator::RawReplay,
    log: operator::RawLog,
    acme: Option<super::acme::RawAcme>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEdge {
    http: Option<String>,
    https: Option<String>,
    http_service_port: Option<u16>,
    https_service_port: Option<u16>,
    region: Option<String>,
    domains: Option<Vec<String>>,
    idle_timeout: Option<String>,
    wake_timeout: Option<String>,
    probe_interval: Option<String>,
    reap_interval: Option<String>,
    drain_timeout: Option<String>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    keepalive_timeout: Option<String>,
    max_header_count: Option<usize>,
    max_header_bytes: Option<usize>,
    client_body_timeout: Option<String>,
    client_send_timeout: Option<String>,
    client_min_rate: Option<u64>,
    machine_read_timeout: Option<String>,
    machine_send_timeout: Option<String>,
    h2_keepalive_interval: Option<String>,
    h2_keepalive_timeout: Option<String>,
    max_upstream_connections: Option<usize>,
    max_machine_connections: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    queue_timeout: Option<String>,
    max_queued: Option<usize>,
    http_proxy_protocol: Option<bool>,
    https_proxy_protocol: Option<bool>,
    workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawApi {
    listen: Option<String>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTls {
    certs_dir: Option<PathBuf>,
    handshake_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMachines {
    driver: Option<String>,
    private_ip_range: Option<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLimits {
    apps: Option<usize>,
    machines_per_app: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSandbox {
    runtime: Option<String>,
    network: Option<String>,
    egress: Option<bool>,
    pids_limit: Option<u32>,
    rootfs_size_mb: Option<u64>,
    init: Option<String>,
    user_namespace: Option<bool>,
    id_map_base: Option<u32>,
    id_map_size: Option<u32>,
    registries: Option<Vec<RegistryConfig>>,
}

impl RawConfig {
    /// The typed config; each value that does not parse is noted in `errors`. Relative
    /// paths written in the file are taken from `dir`.
    pub(super) fn into_config(self, dir: &Path, errors: &mut ConfigErrors) -> Config {
        let d = Config::default();
        let within = |path: PathBuf| dir.join(path);
        Config {
            data_dir: self.data_dir.map_or(d.data_dir, within),
            log_level: errors.parsed("log_level", self.log_level, d.log_level, log_level),
            edge: self.edge.into_edge(d.edge, errors),
            api: self.api.into_api(d.api, errors),
            tls: self.tls.into_tls(d.tls, dir, errors),
            geo: GeoConfig {
                ipv4_db: self.geo.ipv4_db.map(within),
                ipv6_db: self.geo.ipv6_db.map(within),
            },
            machines: self.machines.into_machines(d.machines, errors),
            sandbox: self.sandbox.into_sandbox(d.sandbox, errors),
            limits: LimitsConfig {
                apps: self.limits.apps.unwrap_or(d.limits.apps),
                machines_per_app: self
                    .limits
                    .machines_per_app
                    .unwrap_or(d.limits.machines_per_app),
            },
            regions: self.regions.unwrap_or(d.regions),
            images: self.images.unwrap_or(d.images),
            cluster: self.cluster.map(|c| c.into_cluster(errors)),
            wake: self.wake.into_wake(errors),
            no_wake: self.no_wake.into_no_wake(errors),
            replay: self.replay.into_replay(),
            log: self.log.into_log(errors),
            acme: self.acme.map(|acme| {
                let mut acme = acme.into_acme(errors);
                acme.directory_ca = acme.directory_ca.map(within);
                acme
            }),
        }
    }
}

impl RawEdge {
    fn into_edge(self, d: EdgeConfig, errors: &mut ConfigErrors) -> EdgeConfig {
        let time = duration::parse;
        EdgeConfig {
            http: errors.parsed("edge.http", self.http, d.http, address),
            https: errors.parsed("edge.https", self.https, d.https, address),
            http_service_port: self.http_service_port.unwrap_or(d.http_service_port),
            https_service_port: self.https_service_port.unwrap_or(d.https_service_port),
            region: self.region.unwrap_or(d.region),
            domains: self.domains.unwrap_or(d.domains),
            idle_timeout: errors.parsed(
                "edge.idle_timeout",
                self.idle_timeout,
                d.idle_timeout,
                time,
            ),
            wake_timeout: errors.parsed(
                "edge.wake_timeout",
                self.wake_timeout,
                d.wake_timeout,
                time,
            ),
            probe_interval: errors.parsed(
                "edge.probe_interval",
                self.probe_interval,
                d.probe_interval,
                time,
            ),
            reap_interval: errors.parsed(
                "edge.reap_interval",
                self.reap_interval,
                d.reap_interval,
                time,
            ),
            drain_timeout: errors.parsed(
                "edge.drain_timeout",
                self.drain_timeout,
                d.drain_timeout,
                time,
            ),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: errors.parsed(
                "edge.header_read_timeout",
                self.header_read_timeout,
                d.header_read_timeout,
                time,
            ),
            keepalive_timeout: errors.parsed(
                "edge.keepalive_timeout",
                self.keepalive_timeout,
                d.keepalive_timeout,
                time,
            ),
            max_header_count: self.max_header_count.unwrap_or(d.max_header_count),
            max_header_bytes: self.max_header_bytes.unwrap_or(d.max_header_bytes),
            client_body_timeout: errors.parsed(
                "edge.client_body_timeout",
                self.client_body_timeout,
                d.client_body_timeout,
                time,
            ),
            client_send_timeout: errors.parsed(
                "edge.client_send_timeout",
                self.client_send_timeout,
                d.client_send_timeout,
                time,
            ),
            client_min_rate: self.client_min_rate.unwrap_or(d.client_min_rate),
            machine_read_timeout: errors.parsed(
                "edge.machine_read_timeout",
                self.machine_read_timeout,
                d.machine_read_timeout,
                time,
            ),
            machine_send_timeout: errors.parsed(
                "edge.machine_send_timeout",
                self.machine_send_timeout,
                d.machine_send_timeout,
                time,
            ),
            h2_keepalive_interval: errors.parsed(
                "edge.h2_keepalive_interval",
                self.h2_keepalive_interval,
                d.h2_keepalive_interval,
                time,
            ),
            h2_keepalive_timeout: errors.parsed(
                "edge.h2_keepalive_timeout",
                self.h2_keepalive_timeout,
                d.h2_keepalive_timeout,
                time,
            ),
            max_upstream_connections: self
                .max_upstream_connections
                .unwrap_or(d.max_upstream_connections),
            max_machine_connections: self
                .max_machine_connections
                .unwrap_or(d.max_machine_connections),
            trusted_proxies: match self.trusted_proxies {
                None => d.trusted_proxies,
                Some(entries) => entries
                    .iter()
                    .filter_map(|entry| errors.ok("edge.trusted_proxies", network(entry)))
                    .collect(),
            },
            queue_timeout: errors.parsed(
                "edge.queue_timeout",
                self.queue_timeout,
                d.queue_timeout,
                time,
            ),
            max_queued: self.max_queued.unwrap_or(d.max_queued),
            http_proxy_protocol: self.http_proxy_protocol.unwrap_or(d.http_proxy_protocol),
            https_proxy_protocol: self.https_proxy_protocol.unwrap_or(d.https_proxy_protocol),
            workers: self.workers.unwrap_or(d.workers),
        }
    }
}

impl RawApi {
    fn into_api(self, d: ApiConfig, errors: &mut ConfigErrors) -> ApiConfig {
        ApiConfig {
            listen: errors.parsed("api.listen", self.listen, d.listen, address),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: errors.parsed(
                "api.header_read_timeout",
                self.header_read_timeout,
                d.header_read_timeout,
                duration::parse,
            ),
            idle_timeout: errors.parsed(
                "api.idle_timeout",
                self.idle_timeout,
                d.idle_timeout,
                duration::parse,
            ),
        }
    }
}

impl RawTls {
    fn into_tls(self, d: TlsConfig, dir: &Path, errors: &mut ConfigErrors) -> TlsConfig {
        TlsConfig {
            certs_dir: self.certs_dir.map_or(d.certs_dir, |path| dir.join(path)),
            handshake_timeout: errors.parsed(
                "tls.handshake_timeout",
                self.handshake_timeout,
                d.handshake_timeout,
                duration::parse,
            ),
        }
    }
}

impl RawMachines {
    fn into_machines(self, d: MachinesConfig, errors: &mut ConfigErrors) -> MachinesConfig {
        MachinesConfig {
            driver: errors.parsed("machines.driver", self.driver, d.driver, str::parse),
            private_ip_range: errors.parsed(
                "machines.private_ip_range",
                self.private_ip_range,
                d.private_ip_range,
                AddressRange::parse_loopback,
            ),
            stop_signal: errors.parsed(
                "machines.stop_signal",
                self.stop_signal,
                d.stop_signal,
                parse_signal,
            ),
            stop_timeout: errors.parsed(
                "machines.stop_timeout",
                self.stop_timeout,
                d.stop_timeout,
                duration::parse,
            ),
        }
    }
}

impl RawSandbox {
    fn into_sandbox(self, d: SandboxConfig, errors: &mut ConfigErrors) -> SandboxConfig {
        SandboxConfig {
            runtime: self.runtime.unwrap_or(d.runtime),
            network: errors.parsed(
                "sandbox.network",
                self.network,
                d.network,
                AddressRange::parse_private,
            ),
            egress: self.egress.unwrap_or(d.egress),
            pids_limit: self.pids_limit.unwrap_or(d.pids_limit),
            rootfs_size_mb: self.rootfs_size_mb.unwrap_or(d.rootfs_size_mb),
            init: self.init.unwrap_or(d.init),
            user_namespace: self.user_namespace.unwrap_or(d.user_namespace),
            id_map_base: self.id_map_base.unwrap_or(d.id_map_base),
            id_map_size: self.id_map_size.unwrap_or(d.id_map_size),
            registries: self.registries.unwrap_or(d.registries),
        }
    }
}

/// Log filter directives: a level (`info`), or levels per target (`warn,edgewake=debug`).
fn log_level(text: &str) -> Result<Targets, String> {
    text.parse().map_err(|e| {
        format!("`{text}` is not a level like \"info\" or \"warn,edgewake=debug\": {e}")
    })
}

/// A listener address: an IP and a port.
pub(super) fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address like 0.0.0.0:80"))
}

/// A CIDR block, or a single address standing for itself.
fn network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or CIDR block"))
}

#[cfg(test)]
mod tests {
    use crate::addresses::AddressRange;
    use crate::config::{Config, DEFAULT_PRIVATE_IP_RANGE, DEFAULT_SANDBOX_NETWORK, DriverKind};
    use nix::sys::signal::Signal;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    /// Each value written as text comes out as its type, ready to use.
    #[test]
    fn text_values_come_out_typed() {
        let config = Config::parse(
            r#"
            [edge]
            http = "127.0.0.1:8080"
            idle_timeout = "1m30s"
            trusted_proxies = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
            [api]
            listen = "[::1]:4281"
            [tls]
            handshake_timeout = "250ms"
            [machines]
            driver = "sandbox"
            private_ip_range = "127.33.0.0/24"
            stop_signal = "int"
            stop_timeout = "2s"
            [sandbox]
            network = "10.77.0.0/16"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.edge.http,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.edge.idle_timeout, Duration::from_secs(90));
        let trusted: Vec<_> = config
            .edge
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(trusted, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        assert_eq!(
            config.api.listen,
            "[::1]:4281".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.tls.handshake_timeout, Duration::from_millis(250));
        assert_eq!(config.machines.driver, DriverKind::Sandbox);
        assert_eq!(
            config.machines.private_ip_range.to_string(),
            "127.33.0.0/24"
        );
        assert_eq!(config.machines.stop_signal, Signal::SIGINT);
        assert_eq!(config.machines.stop_timeout, Duration::from_secs(2));
        assert_eq!(
            config.sandbox.network.gateway(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
    }

    /// The connection limits come out typed; a wrong one is named by its key, with the
    /// others.
    #[test]
    fn connection_limits() {
        let config = Config::parse(
            r#"
            [edge]
            client_body_timeout = "5s"
            client_min_rate = 512
            machine_read_timeout = "2m"
            h2_keepalive_interval = "10s"
            max_machine_connections = 8
            [api]
            max_connections = 16
            idle_timeout = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(config.edge.client_body_timeout, Duration::from_secs(5));
        assert_eq!(config.edge.client_min_rate, 512);
        assert_eq!(config.edge.machine_read_timeout, Duration::from_secs(120));
        assert_eq!(config.edge.h2_keepalive_interval, Duration::from_secs(10));
        assert_eq!(config.edge.max_machine_connections, 8);
        assert_eq!(
            (config.api.max_connections, config.api.idle_timeout),
            (16, Duration::from_secs(30))
        );
        let errors = Config::parse(
            "[edge]\nclient_send_timeout = \"soon\"\nmax_upstream_connections = 0\n[api]\nheader_read_timeout = \"0s\"\n",
        )
        .unwrap_err();
        let all = errors.problems().join("\n");
        for key in [
            "edge.client_send_timeout",
            "edge.max_upstream_connections",
            "api.header_read_timeout",
        ] {
            assert!(all.contains(key), "{key} not named in:\n{all}");
        }
    }

    /// An empty file is exactly the built-in defaults.
    #[test]
    fn empty_file_is_the_defaults() {
        let parsed = Config::parse("").unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    /// The default ranges are of the kind their driver needs, as a written one must be.
    #[test]
    fn default_ranges_are_of_their_kind() {
        let loopback = DEFAULT_PRIVATE_IP_RANGE.to_string();
        assert_eq!(
            AddressRange::parse_loopback(&loopback),
            Ok(DEFAULT_PRIVATE_IP_RANGE)
        );
        let private = DEFAULT_SANDBOX_NETWORK.to_string();
        assert_eq!(
            AddressRange::parse_private(&private),
            Ok(DEFAULT_SANDBOX_NETWORK)
        );
    }

    /// The driver is read by name, and a wrong name lists the known ones.
    #[test]
    fn driver_names() {
        for driver in DriverKind::ALL {
            assert_eq!(driver.name().parse(), Ok(driver));
        }
        let err = "vm".parse::<DriverKind>().unwrap_err();
        assert!(err.contains("process, sandbox"), "{err}");
    }
}
