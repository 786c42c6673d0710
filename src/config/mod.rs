//! Operator configuration: `config/edgewake.toml`, read once into typed values, then
//! validated as a whole.
//!
//! `raw` is the file as written; turning it into a `Config` parses every value that is
//! text in the file (addresses, durations, ranges, the signal, the driver) exactly once,
//! so nothing downstream parses again. Unknown keys are rejected, and every problem is
//! reported at once, named by its key. Durations are written like `"4s"`, and every
//! default is a named constant beside its field.

pub mod acme;
pub mod cluster;
pub mod duration;
pub mod locate;
pub mod operator;
mod raw;
mod validate;

use crate::addresses::AddressRange;
use ipnet::IpNet;
use nix::sys::signal::Signal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};

pub use acme::{AcmeConfig, AcmeDirectory};
pub use cluster::ClusterConfig;
pub use locate::{ConfigSource, Located};
pub use operator::{AgentPieces, LogConfig, LogFormat, NoWakeConfig, ReplayConfig, WakeConfig};
pub use validate::ConfigErrors;

/// Where every command looks for its config, after `--config` and `EDGEWAKE_CONFIG`
/// (relative to the current directory), then `SYSTEM_CONFIG_PATH`.
pub const DEFAULT_CONFIG_PATH: &str = "config/edgewake.toml";
/// The config of an installed edgewake (the systemd unit's).
pub const SYSTEM_CONFIG_PATH: &str = "/etc/edgewake/edgewake.toml";
/// What is logged: `info`, `warn`, or per target (`warn,edgewake=debug`).
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::INFO;
pub const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80);
pub const DEFAULT_HTTPS_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443);
pub const DEFAULT_API_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4280);
/// Concurrent connections to the Machines API (more wait in the kernel's backlog).
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 256;
/// How long an API client may take to send a request's headers.
pub const DEFAULT_API_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// An API connection with no request in flight this long is closed.
pub const DEFAULT_API_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Public port whose services the plain-HTTP listener serves, whatever it binds.
pub const DEFAULT_HTTP_SERVICE_PORT: u16 = 80;
/// Public port whose services the HTTPS listener serves, whatever it binds.
pub const DEFAULT_HTTPS_SERVICE_PORT: u16 = 443;
pub const DEFAULT_EDGE_REGION: &str = "ams";
pub const DEFAULT_DOMAIN: &str = "localhost";
/// A started machine with no request in flight for this long is stopped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a request waits for a stopped machine to start and listen.
pub const DEFAULT_WAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Gap between readiness probes (TCP connects) while a machine boots.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// How often the reaper looks for idle machines.
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_millis(250);
/// How long shutdown waits for in-flight requests before cutting them.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// How long a client may take to send a request's headers (and, on HTTP/1.1, to start
/// the next request on a kept-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client connection with no request in flight for this long is closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// The longest a client may keep edgewake waiting for the next part of a request body
/// (nginx's `client_body_timeout`).
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a write to a client may wait for it to read (nginx's `send_timeout`); on
/// HTTP/2, the longest an answer may wait for its client to take more of it.
pub const DEFAULT_CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per second of waiting a client must average, reading or sending, once it has
/// kept edgewake waiting for a timeout's worth (so a drip of a byte every few seconds
/// is cut; Kestrel's minimum is 240).
pub const DEFAULT_CLIENT_MIN_RATE: u64 = 256;
/// The longest edgewake waits for a machine's answer, and for each next part of it.
pub const DEFAULT_MACHINE_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a write to a machine may wait for it to read.
pub const DEFAULT_MACHINE_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 clients are sent a PING after this much silence...
pub const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and their connection is closed when it is not answered within this.
pub const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections to machines, all machines together (each is a file descriptor).
pub const DEFAULT_MAX_UPSTREAM_CONNECTIONS: usize = 16_384;
/// Pooled connections to one machine (HTTP/2 clients, upgrades, h2c backends share
/// them); further requests wait up to `queue_timeout` for one.
pub const DEFAULT_MAX_MACHINE_CONNECTIONS: usize = 256;
/// Threads serving client connections, each with a current-thread runtime of its own
/// (`edge::workers`); 0 serves them on the main runtime, with everything else.
pub const DEFAULT_EDGE_WORKERS: usize = 0;
/// More edge workers than this is a typo, not a machine's cores.
pub const MAX_EDGE_WORKERS: usize = 1024;
/// Most header fields a request may carry (more: 431).
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Most bytes a request's header section may take (more: 431).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_CERTS_DIR: &str = "certs";
/// How long a request waits for room when every machine is at its hard limit.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many requests per app may wait so (more: 503 at once).
pub const DEFAULT_MAX_QUEUED: usize = 256;
/// How long a client may take to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// 127.20.0.0/16 (a compile error if the prefix left no room for machines).
pub const DEFAULT_PRIVATE_IP_RANGE: AddressRange =
    AddressRange::new(Ipv4Addr::new(127, 20, 0, 0), 16).expect("a /16 has room");
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::SIGTERM;
/// After the stop signal, a machine gets this long before SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a stop may wait before SIGKILL, whoever asks (Fly's kill_timeout limit):
/// a machine cannot hold a stop, a destroy or edgewake's shutdown for longer.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_DRIVER: DriverKind = DriverKind::Process;
/// The OCI runtime the sandbox driver runs images with.
pub const DEFAULT_SANDBOX_RUNTIME: &str = "runc";
/// Sandboxed machines' addresses, 172.30.0.0/16; the first is the host side of every
/// machine's link.
pub const DEFAULT_SANDBOX_NETWORK: AddressRange =
    AddressRange::new(Ipv4Addr::new(172, 30, 0, 0), 16).expect("a /16 has room");
/// Most processes (and threads) one sandboxed machine may have at once.
pub const DEFAULT_SANDBOX_PIDS_LIMIT: u32 = 512;
/// Size of a sandboxed machine's writable layer (tmpfs: memory-backed, charged to the
/// machine's memory, gone at every stop).
pub const DEFAULT_SANDBOX_ROOTFS_SIZE_MB: u64 = 128;
/// A static init run as every sandboxed machine's first process (Debian: tini), so the
/// machine's program gets its stop signal and its orphans are reaped.
pub const DEFAULT_SANDBOX_INIT: &str = "/usr/bin/tini-static";
/// Host ids that root and the users of sandboxed machines map to (a user namespace):
/// container id 0 is host id `id_map_base`, for `id_map_size` ids.
pub const DEFAULT_SANDBOX_ID_MAP_BASE: u32 = 1_000_000;
pub const DEFAULT_SANDBOX_ID_MAP_SIZE: u32 = 65_536;
/// Most apps one edgewake holds.
pub const DEFAULT_MAX_APPS: usize = 1_000;
/// Most machines (not counting destroyed ones) one app holds.
pub const DEFAULT_MAX_MACHINES_PER_APP: usize = 10_000;
/// A machine config without `guest` gets Fly's smallest preset (shared-cpu-1x).
pub const DEFAULT_GUEST_MEMORY_MB: u64 = 256;
pub const DEFAULT_GUEST_CPUS: u32 = 1;

/// The whole configuration file. Relative paths in a file are relative to the file's
/// own directory (so the file means the same wherever edgewake is started); built-in
/// defaults are relative to the current directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    /// What is logged (`RUST_LOG`, when set, wins).
    pub log_level: Targets,
    pub edge: EdgeConfig,
    pub api: ApiConfig,
    pub tls: TlsConfig,
    pub geo: GeoConfig,
    pub machines: MachinesConfig,
    pub sandbox: SandboxConfig,
    pub limits: LimitsConfig,
    pub regions: Vec<RegionConfig>,
    /// Image reference → what the process driver runs for it.
    pub images: BTreeMap<String, ImageConfig>,
    /// Several edges sharing one state; `None` is the single node (SQLite only).
    pub cluster: Option<ClusterConfig>,
    pub wake: WakeConfig,
    pub no_wake: NoWakeConfig,
    pub replay: ReplayConfig,
    pub log: LogConfig,
    /// Certificates from an ACME CA; `None` (no `[acme]` section): no ACME.
    pub acme: Option<AcmeConfig>,
}

/// The data plane: listeners, domains, wake and idle behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub http_service_port: u16,
    pub https_service_port: u16,
    /// Code of the region this edge runs in.
    pub region: String,
    /// Apps are reached at `<app>.<domain>` for each of these.
    pub domains: Vec<String>,
    pub idle_timeout: Duration,
    pub wake_timeout: Duration,
    pub probe_interval: Duration,
    pub reap_interval: Duration,
    pub drain_timeout: Duration,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub client_body_timeout: Duration,
    pub client_send_timeout: Duration,
    /// Bytes per second; 0 for no minimum.
    pub client_min_rate: u64,
    pub machine_read_timeout: Duration,
    pub machine_send_timeout: Duration,
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    pub max_upstream_connections: usize,
    pub max_machine_connections: usize,
    /// Peers (CIDRs; a single address is its /32 or /128) whose PROXY protocol header
    /// or `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    pub queue_timeout: Duration,
    pub max_queued: usize,
    /// Whether the HTTP / HTTPS listener expects a PROXY protocol header (v1 or v2) from
    /// trusted peers (Fly's `proxy_proto` handler, on the edge's side).
    pub http_proxy_protocol: bool,
    pub https_proxy_protocol: bool,
    /// Edge worker threads client connections are handed to (0: the main runtime).
    pub workers: usize,
}

/// MaxMind-format databases locating clients. Without them, every client is placed at
/// the edge's own region.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct GeoConfig {
    /// Database for IPv4 clients (also used for IPv6 when `ipv6_db` is not set).
    pub ipv4_db: Option<PathBuf>,
    /// Database for IPv6 clients (also used for IPv4 when `ipv4_db` is not set).
    pub ipv6_db: Option<PathBuf>,
}

/// Certificates for the HTTPS listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// `<host>.crt` + `<host>.key` (PEM); a wildcard `*.example.com` is `_.example.com`.
    pub certs_dir: PathBuf,
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The control plane's Machines API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How machines are realised.
#[derive(Debug, Clone, PartialEq)]
pub struct MachinesConfig {
    pub driver: DriverKind,
    /// Loopback range from which each process-driver machine gets its own address.
    pub private_ip_range: AddressRange,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
}

/// Quotas on what the API may create (more: 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    pub apps: usize,
    pub machines_per_app: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            apps: DEFAULT_MAX_APPS,
            machines_per_app: DEFAULT_MAX_MACHINES_PER_APP,
        }
    }
}

/// How machines run (`machines.driver`, `serve --driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Local processes on loopback addresses; not a security boundary.
    Process,
    /// OCI images under an OCI runtime, in their own namespaces.
    Sandbox,
}

impl DriverKind {
    pub const ALL: [DriverKind; 2] = [DriverKind::Process, DriverKind::Sandbox];

    /// The name the config file and `--driver` use.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Process => "process",
            DriverKind::Sandbox => "sandbox",
        }
    }
}

impl FromStr for DriverKind {
    type Err = String;

    fn from_str(text: &str) -> Result<DriverKind, String> {
        DriverKind::ALL
            .into_iter()
            .find(|driver| driver.name() == text)
            .ok_or_else(|| {
                let known: Vec<_> = DriverKind::ALL.iter().map(|d| d.name()).collect();
                format!("`{text}` is not a driver (known: {})", known.join(", "))
            })
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The sandbox driver: OCI images run by an OCI runtime in their own namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// The OCI runtime binary (found on PATH, or a path).
    pub runtime: String,
    /// Private IPv4 range from which each sandboxed machine gets its address.
    pub network: AddressRange,
    /// Whether machines may open connections beyond the host (NATed); never to the host
    /// itself or to other machines.
    pub egress: bool,
    pub pids_limit: u32,
    pub rootfs_size_mb: u64,
    /// The init binary bind-mounted into machines as their first process ("" for none).
    pub init: String,
    /// Run machines in a user namespace (root inside is an unprivileged id outside).
    pub user_namespace: bool,
    pub id_map_base: u32,
    pub id_map_size: u32,
    /// Credentials and TLS settings for image registries, by host.
    pub registries: Vec<RegistryConfig>,
}

/// How to reach one image registry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegistryConfig {
    /// `registry.example.com` or `host:port`, as written in image references.
    pub host: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the password (kept out of the file).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Plain HTTP or unverified TLS (loopback registries are treated so anyway).
    #[serde(default)]
    pub insecure: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            runtime: DEFAULT_SANDBOX_RUNTIME.into(),
            network: DEFAULT_SANDBOX_NETWORK,
            egress: false,
            pids_limit: DEFAULT_SANDBOX_PIDS_LIMIT,
            rootfs_size_mb: DEFAULT_SANDBOX_ROOTFS_SIZE_MB,
            init: DEFAULT_SANDBOX_INIT.into(),
            user_namespace: true,
            id_map_base: DEFAULT_SANDBOX_ID_MAP_BASE,
            id_map_size: DEFAULT_SANDBOX_ID_MAP_SIZE,
            registries: Vec::new(),
        }
    }
}

/// A region machines can be placed in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegionConfig {
    pub code: String,
    #[serde(default)]
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// What the process driver runs for an image reference. `{bin_dir}` in the command is
/// replaced by the directory of the running edgewake binary.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageConfig {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: Targets::new().with_default(DEFAULT_LOG_LEVEL),
            edge: EdgeConfig::default(),
            api: ApiConfig::default(),
            tls: TlsConfig::default(),
            geo: GeoConfig::default(),
            machines: MachinesConfig::default(),
            sandbox: SandboxConfig::default(),
            limits: LimitsConfig::default(),
            regions: vec![RegionConfig {
                code: DEFAULT_EDGE_REGION.into(),
                name: "Amsterdam, Netherlands".into(),
                latitude: 52.374,
                longitude: 4.890,
            }],
            images: BTreeMap::from([(
                "flyio/fastify-functions".to_string(),
                ImageConfig {
                    command: vec!["{bin_dir}/edgewake".into(), "functions".into()],
                    env: BTreeMap::new(),
                },
            )]),
            cluster: None,
            wake: WakeConfig::default(),
            no_wake: NoWakeConfig::default(),
            replay: ReplayConfig::default(),
            log: LogConfig::default(),
            acme: None,
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http: DEFAULT_HTTP_ADDR,
            https: DEFAULT_HTTPS_ADDR,
            http_service_port: DEFAULT_HTTP_SERVICE_PORT,
            https_service_port: DEFAULT_HTTPS_SERVICE_PORT,
            region: DEFAULT_EDGE_REGION.into(),
            domains: vec![DEFAULT_DOMAIN.into()],
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            wake_timeout: DEFAULT_WAKE_TIMEOUT,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            reap_interval: DEFAULT_REAP_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            client_body_timeout: DEFAULT_CLIENT_BODY_TIMEOUT,
            client_send_timeout: DEFAULT_CLIENT_SEND_TIMEOUT,
            client_min_rate: DEFAULT_CLIENT_MIN_RATE,
            machine_read_timeout: DEFAULT_MACHINE_READ_TIMEOUT,
            machine_send_timeout: DEFAULT_MACHINE_SEND_TIMEOUT,
            h2_keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
            h2_keepalive_timeout: DEFAULT_H2_KEEPALIVE_TIMEOUT,
            max_upstream_connections: DEFAULT_MAX_UPSTREAM_CONNECTIONS,
            max_machine_connections: DEFAULT_MAX_MACHINE_CONNECTIONS,
            trusted_proxies: Vec::new(),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_queued: DEFAULT_MAX_QUEUED,
            http_proxy_protocol: false,
            https_proxy_protocol: false,
            workers: DEFAULT_EDGE_WORKERS,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_API_ADDR,
            max_connections: DEFAULT_API_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_API_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_API_IDLE_TIMEOUT,
        }
    }
}

impl Default for MachinesConfig {
    fn default() -> Self {
        MachinesConfig {
            driver: DEFAULT_DRIVER,
            private_ip_range: DEFAULT_PRIVATE_IP_RANGE,
            stop_signal: DEFAULT_STOP_SIGNAL,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

impl Config {
    /// Reads and validates a config file, reporting every problem at once. Relative
    /// paths in it are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(format!("cannot read {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Config::parse_in(&text, &dir)
    }

    /// Parses TOML text into typed values and validates them; relative paths stay
    /// relative to the current directory.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse_in(text, Path::new(""))
    }

    /// `parse`, with relative paths written in the text taken from `dir`.
    fn parse_in(text: &str, dir: &Path) -> Result<Config, ConfigErrors> {
        let mut unknown = Vec::new();
        let de =
            toml::Deserializer::parse(text).map_err(|e| ConfigErrors::single(e.to_string()))?;
        let parsed: Result<raw::RawConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(written_key(&path)));
        let mut errors = ConfigErrors::default();
        for key in unknown {
            errors.push(format!("unknown key `{key}`"));
        }
        match parsed {
            Ok(raw) => {
                let config = raw.into_config(dir, &mut errors);
                config.validate(&mut errors);
                errors.into_result(config)
            }
            Err(e) => {
                errors.push(e.to_string());
                Err(errors)
            }
        }
    }
}

/// A key as the operator writes it (`regions.0.altitude`); serde_ignored's own form also
/// marks with `?` each `Option` of the raw shape that the key passed through.
fn written_key(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let (parent, part) = match path {
        Path::Root => return String::new(),
        Path::Seq { parent, index } => (parent, index.to_string()),
        Path::Map { parent, key } => (parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => return written_key(parent),
    };
    match written_key(parent) {
        parent if parent.is_empty() => part,
        parent => format!("{parent}.{part}"),
    }
}
