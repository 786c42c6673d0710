//! Health checks as data: the check configs a machine carries (Fly's `checks{}` and
//! `services[].checks[]`) and what the last runs found, as the API shows it
//! (`checks: [{name, status, output, updated_at}]`) and as the proxy reads it (the
//! machine's `Health`). Running them is the `checks` module's job.

use super::spec::optional_duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Fly's default gap between two runs of a check.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Fly's default time a check may take.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Fly's default time after a start during which a failing check is only a warning.
pub const DEFAULT_CHECK_GRACE: Duration = Duration::from_secs(1);
/// Shortest interval a config may ask for: checks run from edgewake itself, and a
/// machine's config must not make it probe without pause.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a check may take.
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// One check as a machine config gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSpec {
    #[serde(rename = "type", default)]
    pub check_type: CheckType,
    /// The machine's port to check; the service's internal port when absent.
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub grace_period: Option<Duration>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `http` (the default) or `https`.
    pub protocol: Option<String>,
    pub tls_server_name: Option<String>,
    #[serde(default)]
    pub tls_skip_verify: bool,
    #[serde(default)]
    pub headers: Vec<CheckHeader>,
    /// Top-level checks only: `readiness` gates routing, `informational` (Fly's
    /// default) only reports.
    pub kind: Option<String>,
}

/// What a check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// Connects to the port.
    #[default]
    Tcp,
    /// Sends an HTTP request and wants a 2xx answer.
    Http,
}

/// A header an HTTP check sends (Fly's `{name, values[]}`).
#[derive(Debug, Clone, Deserialize)]
pub struct CheckHeader {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl CheckSpec {
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(DEFAULT_CHECK_INTERVAL)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT)
    }

    pub fn grace_period(&self) -> Duration {
        self.grace_period.unwrap_or(DEFAULT_CHECK_GRACE)
    }

    /// Whether a top-level check gates routing (service checks always do).
    pub fn is_readiness(&self) -> bool {
        self.kind.as_deref() == Some("readiness")
    }

    /// What is wrong with this check, if anything (`at` names it for the client).
    pub fn problem(&self, at: &str) -> Option<String> {
        if self.interval.is_some_and(|i| i < MIN_CHECK_INTERVAL) {
            return Some(format!(
                "{at}.interval must be at least {MIN_CHECK_INTERVAL:?}"
            ));
        }
        if self
            .timeout
            .is_some_and(|t| t.is_zero() || t > MAX_CHECK_TIMEOUT)
        {
            return Some(format!(
                "{at}.timeout must be within 1ms..{MAX_CHECK_TIMEOUT:?}"
            ));
        }
        if let Some(kind) = self
            .kind
            .as_deref()
            .filter(|k| !matches!(*k, "informational" | "readiness"))
        {
            return Some(format!(
                "{at}.kind must be informational or readiness, not {kind}"
            ));
        }
        match self.protocol.as_deref() {
            None | Some("http") => None,
            Some(other) => Some(format!(
                "{at}.protocol: edgewake checks speak http, not {other}"
            )),
        }
    }
}

/// A check of one machine, ready to run: its name as Fly shows it, where it goes, and
/// whether it gates routing.
#[derive(Debug, Clone)]
pub struct NamedCheck {
    pub name: String,
    pub port: u16,
    pub gates: bool,
    pub spec: CheckSpec,
}

/// Fly's status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    /// Not known yet, or failing within the grace period.
    Warning,
    Critical,
}

/// One check's last result, as the machine JSON shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub output: String,
    pub updated_at: String,
}

/// Whether the proxy may send a machine new requests, as its gating checks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No check gates it (or every one passes).
    Routable,
    /// Started, but its checks have not all passed yet since: requests that want it
    /// wait, as for a wake.
    Settling,
    /// Its checks failed after having passed, or never passed in time: no new requests.
    Failing,
}

/// The current run of a machine's checks: results by name, the health they add up to
/// (watched by requests waiting for a woken machine), and the token that ends the run.
#[derive(Debug)]
pub struct MachineChecks {
    results: Mutex<BTreeMap<String, CheckResult>>,
    health: watch::Sender<Health>,
    run: Mutex<Option<CancellationToken>>,
}

impl Default for MachineChecks {
    fn default() -> Self {
        MachineChecks {
            results: Mutex::new(BTreeMap::new()),
            health: watch::channel(Health::Routable).0,
            run: Mutex::new(None),
        }
    }
}

impl MachineChecks {
    fn results(&self) -> MutexGuard<'_, BTreeMap<String, CheckResult>> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the proxy reads: lock-free enough (a watch borrow) for every request.
    pub fn health(&self) -> Health {
        *self.health.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    pub fn set_health(&self, health: Health) {
        self.health
            .send_if_modified(|h| std::mem::replace(h, health) != health);
    }

    /// The last results, by name.
    pub fn snapshot(&self) -> Vec<CheckResult> {
        self.results().values().cloned().collect()
    }

    pub fn record(&self, result: CheckResult) {
        self.results().insert(result.name.clone(), result);
    }

    /// Begins a new run (a start): the old one ends, the results start over. The
    /// returned token ends this run.
    pub fn begin(&self, names: &[String], gated: bool) -> CancellationToken {
        let token = CancellationToken::new();
        if let Some(old) = self.run_slot().replace(token.clone()) {
            old.cancel();
        }
        let mut results = self.results();
        results.clear();
        for name in names {
            let pending = CheckResult {
                name: name.clone(),
                status: CheckStatus::Warning,
                output: "waiting for the first run".into(),
                updated_at: super::record::now_rfc3339(),
            };
            results.insert(name.clone(), pending);
        }
        drop(results);
        self.set_health(if gated {
            Health::Settling
        } else {
            Health::Routable
        });
        token
    }

    /// Ends the run (a stop): no check runs against a machine that is not started,
    /// and it has no results to show.
    pub fn end(&self) {
        if let Some(old) = self.run_slot().take() {
            old.cancel();
        }
        self.results().clear();
        self.set_health(Health::Routable);
    }

    fn run_slot(&self) -> MutexGuard<'_, Option<CancellationToken>> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shared handle (the runner's tasks keep one).
pub type SharedChecks = Arc<MachineChecks>;
