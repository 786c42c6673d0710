//! edgewake's own `http_options` for requests that find a machine asleep: the wake page
//! for browsers, the no-wake rules for monitors and crawlers, and waking at the TLS
//! ClientHello. Each field unset means "the operator's default" (`[wake]` in the
//! config); the proxy decides with them (`proxy::wake_page`, `proxy::no_wake`).

use serde::Deserialize;

/// The rules of one port (or the defaults of one service).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HttpRules {
    /// Answer a browser's navigation with a "starting" page instead of holding it.
    #[serde(default)]
    pub wake_page: Option<bool>,
    /// Requests the edge answers itself while the machine sleeps.
    #[serde(default)]
    pub no_wake: Option<NoWakeRules>,
    /// Begin the wake at the TLS ClientHello naming the app (before any request).
    #[serde(default)]
    pub wake_early: Option<bool>,
}

impl HttpRules {
    /// These rules, each unset field taken from `fallback`.
    pub fn or(&self, fallback: &HttpRules) -> HttpRules {
        HttpRules {
            wake_page: self.wake_page.or(fallback.wake_page),
            no_wake: self.no_wake.clone().or_else(|| fallback.no_wake.clone()),
            wake_early: self.wake_early.or(fallback.wake_early),
        }
    }
}

/// Requests that do not wake a sleeping machine and do not keep a running one awake.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NoWakeRules {
    /// Exact paths, or prefixes ending in `*` (`/.well-known/*`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Case-insensitive pieces of the User-Agent (`UptimeRobot`).
    #[serde(default)]
    pub user_agents: Vec<String>,
    /// Methods (`HEAD`, `OPTIONS`).
    #[serde(default)]
    pub methods: Vec<String>,
    /// The status of the edge's answer (the operator's default when unset).
    #[serde(default)]
    pub status: Option<u16>,
    /// Whether the operator's list of monitors and crawlers applies too (default yes).
    #[serde(default)]
    pub operator_defaults: Option<bool>,
}
