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

/// The rules of a port, each unset field read from its service's (no copies: read on
/// every request).
#[derive(Debug, Clone, Copy)]
pub struct RulesView<'a> {
    pub port: &'a HttpRules,
    pub service: &'a HttpRules,
}

impl<'a> RulesView<'a> {
    pub fn wake_page(&self) -> Option<bool> {
        self.port.wake_page.or(self.service.wake_page)
    }

    pub fn no_wake(&self) -> Option<&'a NoWakeRules> {
        self.port.no_wake.as_ref().or(self.service.no_wake.as_ref())
    }

    pub fn wake_early(&self) -> Option<bool> {
        self.port.wake_early.or(self.service.wake_early)
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
