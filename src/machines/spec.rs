//! The typed view of a machine's `config` that edgewake acts on. The raw JSON is kept
//! beside it untouched, so unknown fields round-trip.

use super::checks::{CheckSpec, NamedCheck};
pub use super::http_rules::{HttpRules, NoWakeRules, RulesView};
use super::{go_duration, normalize};
use crate::config::{DEFAULT_GUEST_CPUS, DEFAULT_GUEST_MEMORY_MB, MAX_STOP_TIMEOUT};
use crate::drivers::{Guest, Init};
use crate::signals::parse_signal;
use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// What edgewake reads from a machine config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MachineSpec {
    pub image: String,
    pub env: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub restart: Restart,
    pub stop_config: StopConfig,
    pub init: Init,
    pub guest: GuestSpec,
    /// Fly's top-level checks, by name (only `kind = "readiness"` ones gate routing).
    pub checks: BTreeMap<String, CheckSpec>,
}

/// Fly's `guest`; unset fields take the operator's defaults (Fly's shared-cpu-1x).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct GuestSpec {
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
}

/// Fly's largest machine (performance-16x): 16 CPUs.
pub const MAX_GUEST_CPUS: u32 = 16;
/// Fly's largest machine: 8 GiB per performance CPU, 128 GiB.
pub const MAX_GUEST_MEMORY_MB: u64 = 131_072;

impl GuestSpec {
    /// The limits to run with: unset (or 0) takes the default, and never more than Fly's
    /// largest machine (`accept` refuses more; a record stored before that check is
    /// held to it here, so the sandbox's byte counts cannot overflow).
    pub fn resolve(&self) -> Guest {
        Guest {
            cpus: self
                .cpus
                .filter(|c| *c > 0)
                .unwrap_or(DEFAULT_GUEST_CPUS)
                .min(MAX_GUEST_CPUS),
            memory_mb: self
                .memory_mb
                .filter(|m| *m > 0)
                .unwrap_or(DEFAULT_GUEST_MEMORY_MB)
                .min(MAX_GUEST_MEMORY_MB),
        }
    }

    /// Fly's bounds: at most 16 CPUs and 128 GiB.
    fn check(&self) -> Result<(), SpecError> {
        if let Some(cpus) = self.cpus.filter(|c| *c > MAX_GUEST_CPUS) {
            return Err(SpecError::TooManyCpus(cpus));
        }
        if let Some(mb) = self.memory_mb.filter(|m| *m > MAX_GUEST_MEMORY_MB) {
            return Err(SpecError::TooMuchMemory(mb));
        }
        Ok(())
    }
}

/// How a stop ends the machine: Fly's `stop_config` (`timeout` as `"10s"` or nanoseconds).
/// Unset fields fall back to the operator's `machines.stop_signal`/`stop_timeout`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StopConfig {
    pub signal: Option<String>,
    #[serde(deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
}

pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Duration>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(None),
        value => go_duration::from_json(&value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A service: public ports mapped to the machine's `internal_port`.
#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub internal_port: u16,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default = "default_true")]
    pub autostart: bool,
    #[serde(default)]
    pub autostop: Autostop,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// The reaper leaves at least this many machines of the app running in each
    /// region (Fly: in the primary region only).
    #[serde(default)]
    pub min_machines_running: usize,
    /// Checks that gate routing to this service.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Defaults for the `http_options` of this service's ports (a port's own win).
    #[serde(default)]
    pub http_options: HttpOptions,
}

/// Fly's default soft limit: above it, a machine is preferred less and a stopped sibling
/// is woken.
pub const DEFAULT_SOFT_LIMIT: usize = 20;

/// How much load a machine takes (`type` is requests or connections; edgewake counts
/// requests in flight either way, a WebSocket being one long request).
#[derive(Debug, Clone, Deserialize)]
pub struct Concurrency {
    #[serde(default = "default_soft_limit")]
    pub soft_limit: usize,
    /// Never more than this in flight; unlimited when absent (Fly's default).
    #[serde(default)]
    pub hard_limit: Option<usize>,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            soft_limit: DEFAULT_SOFT_LIMIT,
            hard_limit: None,
        }
    }
}

fn default_soft_limit() -> usize {
    DEFAULT_SOFT_LIMIT
}

/// A public port (or range) of a service.
#[derive(Debug, Clone, Deserialize)]
pub struct Port {
    pub port: Option<u16>,
    pub start_port: Option<u16>,
    pub end_port: Option<u16>,
    #[serde(default)]
    pub handlers: Vec<String>,
    /// On a port with the `http` handler: answer 301 to the same URL on https.
    #[serde(default)]
    pub force_https: bool,
    #[serde(default)]
    pub http_options: HttpOptions,
}

/// Per-port HTTP options (Fly's `http_options`): `h2_backend`, and edgewake's own
/// rules for requests that find the machine asleep (see `http_rules`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpOptions {
    /// Reach the machine over HTTP/2 without TLS (h2c, prior knowledge), e.g. for gRPC.
    #[serde(default)]
    pub h2_backend: bool,
    #[serde(flatten)]
    pub rules: HttpRules,
}

/// Whether idle machines of a service are stopped. Accepts `true`/`false` and Fly's
/// strings `"off"`, `"stop"`, `"suspend"` (suspend stops: there are no snapshots here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autostop {
    Off,
    Stop,
}

/// edgewake stops idle machines unless told not to.
impl Default for Autostop {
    fn default() -> Self {
        Autostop::Stop
    }
}

impl<'de> Deserialize<'de> for Autostop {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        match Value::deserialize(de)? {
            Value::Bool(true) => Ok(Autostop::Stop),
            Value::Bool(false) => Ok(Autostop::Off),
            Value::String(s) if s == "off" => Ok(Autostop::Off),
            Value::String(s) if s == "stop" || s == "suspend" => Ok(Autostop::Stop),
            other => Err(serde::de::Error::custom(format!(
                "autostop must be true, false, \"off\", \"stop\" or \"suspend\", not {other}"
            ))),
        }
    }
}

/// The restart policy; edgewake honours `always` when it boots (see README).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Restart {
    #[serde(default)]
    pub policy: Option<String>,
}

fn default_protocol() -> String {
    "tcp".into()
}

fn default_true() -> bool {
    true
}

impl Port {
    /// `["tls"]` without `http`: TLS is terminated and the decrypted bytes pass to the
    /// machine as TCP. (Ports on the edge's listeners are otherwise served as HTTP.)
    pub fn is_tls_passthrough(&self) -> bool {
        let has = |name: &str| self.handlers.iter().any(|h| h == name);
        has("tls") && !has("http")
    }

    pub fn covers(&self, public_port: u16) -> bool {
        match (self.port, self.start_port, self.end_port) {
            (Some(p), _, _) => p == public_port,
            (None, Some(start), Some(end)) => (start..=end).contains(&public_port),
            _ => false,
        }
    }
}

/// Why a machine config is refused; each names the field a client must fix.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("config must be an object")]
    NotAnObject,
    #[error(transparent)]
    Duration(#[from] normalize::BadDuration),
    #[error("invalid config: {0}")]
    Invalid(#[source] serde_json::Error),
    #[error("config.image is required")]
    NoImage,
    #[error("config.services[{0}].internal_port must be 1-65535")]
    NoInternalPort(usize),
    /// `parse_signal`'s own words: `signals` answers in a `String` (typed elsewhere).
    #[error("config.stop_config.signal: {0}")]
    StopSignal(String),
    /// A check the config gives cannot run as written; the message names the field.
    #[error("{0}")]
    Check(String),
    #[error("config.stop_config.timeout is {0:?}; a stop waits at most {MAX_STOP_TIMEOUT:?}")]
    StopTimeout(Duration),
    #[error("config.guest.cpus is {0}; a machine has at most {MAX_GUEST_CPUS}")]
    TooManyCpus(u32),
    #[error("config.guest.memory_mb is {0}; a machine has at most {MAX_GUEST_MEMORY_MB}")]
    TooMuchMemory(u64),
}

impl MachineSpec {
    /// Takes a config from the API: rewrites the fields Fly answers canonically (see
    /// `normalize`), then reads and checks it.
    pub fn accept(mut config: Value) -> Result<(Value, MachineSpec), SpecError> {
        if !config.is_object() {
            return Err(SpecError::NotAnObject);
        }
        normalize::normalize(&mut config)?;
        let spec = MachineSpec::from_config(&config)?;
        spec.guest.check()?;
        if let Some(timeout) = spec.stop_config.timeout.filter(|t| *t > MAX_STOP_TIMEOUT) {
            return Err(SpecError::StopTimeout(timeout));
        }
        Ok((config, spec))
    }

    /// Reads and checks a config as given to the API.
    pub fn from_config(config: &Value) -> Result<MachineSpec, SpecError> {
        if !config.is_object() {
            return Err(SpecError::NotAnObject);
        }
        let spec = MachineSpec::deserialize(config).map_err(SpecError::Invalid)?;
        if spec.image.trim().is_empty() {
            return Err(SpecError::NoImage);
        }
        if let Some(i) = spec.services.iter().position(|s| s.internal_port == 0) {
            return Err(SpecError::NoInternalPort(i));
        }
        if let Some(signal) = &spec.stop_config.signal {
            parse_signal(signal).map_err(SpecError::StopSignal)?;
        }
        if let Some(problem) = spec.check_problem() {
            return Err(SpecError::Check(problem));
        }
        Ok(spec)
    }

    fn check_problem(&self) -> Option<String> {
        let top = self
            .checks
            .iter()
            .find_map(|(name, c)| c.problem(&format!("config.checks.{name}")));
        top.or_else(|| {
            self.services.iter().enumerate().find_map(|(i, s)| {
                s.checks
                    .iter()
                    .enumerate()
                    .find_map(|(j, c)| c.problem(&format!("config.services[{i}].checks[{j}]")))
            })
        })
    }

    /// Every check of the machine, named as Fly names them (`servicecheck-00-http-8080`
    /// for service checks), with the port it goes to and whether it gates routing.
    pub fn named_checks(&self) -> Vec<NamedCheck> {
        let fallback = self.internal_ports().first().copied().unwrap_or(8080);
        let top = self.checks.iter().map(|(name, spec)| NamedCheck {
            name: name.clone(),
            port: spec.port.unwrap_or(fallback),
            gates: spec.is_readiness(),
            spec: spec.clone(),
        });
        let mut index = 0;
        let mut service_checks = Vec::new();
        for service in &self.services {
            for spec in &service.checks {
                let port = spec.port.unwrap_or(service.internal_port);
                let kind = match spec.check_type {
                    super::checks::CheckType::Tcp => "tcp",
                    super::checks::CheckType::Http => "http",
                };
                service_checks.push(NamedCheck {
                    name: format!("servicecheck-{index:02}-{kind}-{port}"),
                    port,
                    gates: true,
                    spec: spec.clone(),
                });
                index += 1;
            }
        }
        top.chain(service_checks).collect()
    }

    /// The request rules for a public port: the port's `http_options`, each unset
    /// field taken from its service's.
    pub fn http_rules(&self, public_port: u16) -> Option<RulesView<'_>> {
        self.port_for(public_port).map(|(service, port)| RulesView {
            port: &port.http_options.rules,
            service: &service.http_options.rules,
        })
    }

    /// The TCP service that exposes `public_port`, if any.
    pub fn service_for_port(&self, public_port: u16) -> Option<&Service> {
        self.port_for(public_port).map(|(service, _)| service)
    }

    /// The TCP service and its port entry for `public_port`, if any.
    pub fn port_for(&self, public_port: u16) -> Option<(&Service, &Port)> {
        self.services
            .iter()
            .filter(|s| s.protocol == "tcp")
            .find_map(|s| {
                s.ports
                    .iter()
                    .find(|p| p.covers(public_port))
                    .map(|p| (s, p))
            })
    }

    /// The ports a readiness probe can try: every service's internal port.
    pub fn internal_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.services.iter().map(|s| s.internal_port).collect();
        ports.dedup();
        ports
    }

    /// The machine's own stop signal, if its config names one (checked on accept).
    pub fn stop_signal(&self) -> Option<Signal> {
        self.stop_config
            .signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
    }

    pub fn restarts_always(&self) -> bool {
        self.restart.policy.as_deref() == Some("always")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_config() -> Value {
        json!({
            "image": "flyio/fastify-functions",
            "env": {"APP_ENV": "production"},
            "services": [{
                "ports": [{"port": 443, "handlers": ["tls", "http"]}, {"port": 80, "handlers": ["http"]}],
                "protocol": "tcp",
                "internal_port": 8080
            }]
        })
    }

    /// The seed's config maps both public ports to 8080 and autostops by default.
    #[test]
    fn seed_config_routes_port_80_to_8080() {
        let spec = MachineSpec::from_config(&seed_config()).unwrap();
        let service = spec.service_for_port(80).unwrap();
        assert_eq!(service.internal_port, 8080);
        assert_eq!(service.autostop, Autostop::Stop);
        assert!(spec.service_for_port(8443).is_none());
    }

    /// autostop takes Fly's booleans and strings, and refuses anything else.
    #[test]
    fn autostop_accepts_fly_spellings() {
        for (value, expected) in [
            (json!(false), Autostop::Off),
            (json!("off"), Autostop::Off),
            (json!(true), Autostop::Stop),
            (json!("stop"), Autostop::Stop),
            (json!("suspend"), Autostop::Stop),
        ] {
            let mut config = seed_config();
            config["services"][0]["autostop"] = value;
            let spec = MachineSpec::from_config(&config).unwrap();
            assert_eq!(spec.services[0].autostop, expected);
        }
        let mut config = seed_config();
        config["services"][0]["autostop"] = json!("sometimes");
        let err = MachineSpec::from_config(&config).unwrap_err();
        assert!(matches!(err, SpecError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("autostop"), "{err}");
    }

    /// stop_config takes Go duration strings or nanoseconds, and a signal name; a
    /// timeout past Fly's 300 s is refused.
    #[test]
    fn stop_config_accepts_strings_or_nanoseconds() {
        let mut config = seed_config();
        config["stop_config"] = json!({"timeout": 15_000_000_000u64, "signal": "SIGINT"});
        let (config, spec) = MachineSpec::accept(config).unwrap();
        assert_eq!(config["stop_config"]["timeout"], "15s");
        assert_eq!(spec.stop_config.timeout, Some(Duration::from_secs(15)));
        assert_eq!(spec.stop_signal(), Some(Signal::SIGINT));
        let mut long = seed_config();
        long["stop_config"] = json!({"timeout": "10000h"});
        let err = MachineSpec::accept(long).unwrap_err();
        assert!(matches!(err, SpecError::StopTimeout(_)), "{err}");
        assert!(err.to_string().contains("stop_config.timeout"), "{err}");
        let mut bad = seed_config();
        bad["stop_config"] = json!({"signal": "SIGNOPE"});
        let err = MachineSpec::accept(bad).unwrap_err();
        assert!(matches!(err, SpecError::StopSignal(_)), "{err}");
        assert!(err.to_string().contains("stop_config.signal"), "{err}");
    }

    /// A guest beyond Fly's largest machine is refused, naming the field; one stored
    /// before that check runs at the largest size instead of overflowing.
    #[test]
    fn guest_is_bounded_as_fly_does() {
        let mut config = seed_config();
        config["guest"] = json!({"cpus": 16, "memory_mb": 131_072});
        assert!(MachineSpec::accept(config.clone()).is_ok());
        config["guest"] = json!({"cpus": 17});
        let err = MachineSpec::accept(config.clone()).unwrap_err();
        assert!(err.to_string().contains("config.guest.cpus"), "{err}");
        config["guest"] = json!({"memory_mb": u64::MAX});
        let err = MachineSpec::accept(config.clone()).unwrap_err();
        assert!(err.to_string().contains("config.guest.memory_mb"), "{err}");
        let stored = MachineSpec::from_config(&config).unwrap();
        assert_eq!(stored.guest.resolve().memory_mb, MAX_GUEST_MEMORY_MB);
        config["guest"] = json!({"cpus": u64::from(u32::MAX) + 1});
        assert!(
            MachineSpec::accept(config).is_err(),
            "past u32 is refused too"
        );
    }

    /// A config without an image is refused with a message naming the field.
    #[test]
    fn image_is_required() {
        let err = MachineSpec::from_config(&json!({"env": {}})).unwrap_err();
        assert!(matches!(err, SpecError::NoImage), "{err}");
        assert!(err.to_string().contains("config.image"), "{err}");
    }

    /// A service without its machine port is refused, naming which service.
    #[test]
    fn internal_port_is_required_per_service() {
        let mut config = seed_config();
        let second = json!({"internal_port": 0, "ports": [{"port": 81}]});
        config["services"].as_array_mut().unwrap().push(second);
        let err = MachineSpec::from_config(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.services[1].internal_port must be 1-65535"
        );
    }
}
