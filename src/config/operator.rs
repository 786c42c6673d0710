//! The operator's defaults for what edgewake does around a wake, and its log:
//! `[wake]` (the page for browsers, waking at the TLS ClientHello, keep-awake bounds),
//! `[no_wake]` (the answer to requests that may not wake an app, and the list of
//! monitors and crawlers every app gets), `[replay]` (fly-replay's bounds) and `[log]`
//! (format, access log). Apps override the first two in their `http_options`.

use super::{ConfigErrors, duration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Browsers get the wake page only where an app asks for it.
pub const DEFAULT_WAKE_PAGE: bool = false;
/// Waking at the ClientHello begins before the request can be checked against the
/// no-wake rules, so a monitor over HTTPS would wake the app: only where asked.
pub const DEFAULT_WAKE_EARLY: bool = false;
/// Longest one keep-awake signal may keep a machine up.
pub const DEFAULT_KEEP_AWAKE_MAX: Duration = Duration::from_secs(3600);
/// Seconds a client is told to wait (`Retry-After`) by the wake page and the sleeping
/// answer.
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 2;
/// Status of the edge's answer to a no-wake request while the app sleeps.
pub const DEFAULT_NO_WAKE_STATUS: u16 = 503;
/// Well-known monitors, crawlers and link unfurlers: pieces of their User-Agent.
pub const DEFAULT_NO_WAKE_USER_AGENTS: &[&str] = &[
    "UptimeRobot",
    "Pingdom",
    "StatusCake",
    "Better Uptime",
    "BetterStack",
    "Site24x7",
    "Uptime-Kuma",
    "Datadog/Synthetics",
    "NewRelicPinger",
    "Checkly",
    "Freshping",
    "HetrixTools",
    "Googlebot",
    "bingbot",
    "DuckDuckBot",
    "Baiduspider",
    "YandexBot",
    "Applebot",
    "AhrefsBot",
    "SemrushBot",
    "MJ12bot",
    "DotBot",
    "PetalBot",
    "Bytespider",
    "Amazonbot",
    "GPTBot",
    "ClaudeBot",
    "CCBot",
    "facebookexternalhit",
    "Twitterbot",
    "Slackbot",
    "Discordbot",
    "LinkedInBot",
    "TelegramBot",
    "WhatsApp",
];
/// Largest request body kept for a fly-replay (Fly's limit: larger bodies cannot be
/// replayed, and the client gets a 502 if the machine asks).
pub const DEFAULT_REPLAY_MAX_BODY: usize = 1024 * 1024;
/// Most bytes of bodies kept for replays at once, over all requests (more: not kept).
pub const DEFAULT_REPLAY_BUDGET: usize = 64 * 1024 * 1024;
/// Most replays one request may go through (Fly's PA02).
pub const DEFAULT_REPLAY_MAX_HOPS: usize = 10;

/// `[wake]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeConfig {
    /// Default of `http_options.wake_page`.
    pub page: bool,
    /// An HTML file replacing the built-in page (`{{app}}`, `{{retry_after}}` filled in).
    pub page_template: Option<PathBuf>,
    /// Default of `http_options.wake_early`.
    pub early: bool,
    pub keep_awake_max: Duration,
    pub retry_after_secs: u32,
}

impl Default for WakeConfig {
    fn default() -> Self {
        WakeConfig {
            page: DEFAULT_WAKE_PAGE,
            page_template: None,
            early: DEFAULT_WAKE_EARLY,
            keep_awake_max: DEFAULT_KEEP_AWAKE_MAX,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
        }
    }
}

/// `[no_wake]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoWakeConfig {
    pub status: u16,
    /// The list every app gets unless it says `operator_defaults = false`.
    pub user_agents: AgentPieces,
}

impl Default for NoWakeConfig {
    fn default() -> Self {
        NoWakeConfig {
            status: DEFAULT_NO_WAKE_STATUS,
            user_agents: AgentPieces::new(DEFAULT_NO_WAKE_USER_AGENTS)
                .expect("the default list builds"),
        }
    }
}

/// Case-insensitive pieces of a User-Agent, searched for all at once: one pass over a
/// request's user agent, however long the list (it is looked for in every request).
#[derive(Clone)]
pub struct AgentPieces {
    /// Lower-cased, as written (empty ones left out: they would match every agent).
    pieces: Vec<String>,
    search: aho_corasick::AhoCorasick,
}

impl AgentPieces {
    /// The search for `pieces`; an error only for a list too large to build it from.
    pub fn new<S: AsRef<str>>(pieces: &[S]) -> Result<AgentPieces, aho_corasick::BuildError> {
        let pieces: Vec<String> = pieces
            .iter()
            .map(|p| p.as_ref().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        let search = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&pieces)?;
        Ok(AgentPieces { pieces, search })
    }

    /// Whether one of the pieces is in `agent` (ASCII case ignored).
    pub fn found_in(&self, agent: &str) -> bool {
        !self.pieces.is_empty() && self.search.is_match(agent)
    }

    pub fn pieces(&self) -> &[String] {
        &self.pieces
    }
}

/// The pieces, not the automaton (a config's Debug is read by people and compared).
impl std::fmt::Debug for AgentPieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgentPieces").field(&self.pieces).finish()
    }
}

impl PartialEq for AgentPieces {
    fn eq(&self, other: &AgentPieces) -> bool {
        self.pieces == other.pieces
    }
}

/// `[replay]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    pub max_body: usize,
    pub budget: usize,
    pub max_hops: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            max_body: DEFAULT_REPLAY_MAX_BODY,
            budget: DEFAULT_REPLAY_BUDGET,
            max_hops: DEFAULT_REPLAY_MAX_HOPS,
        }
    }
}

/// How the log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event (no colour off a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One line per proxied request (target `edgewake::access`).
    pub access: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawWake {
    page: Option<bool>,
    page_template: Option<PathBuf>,
    early: Option<bool>,
    keep_awake_max: Option<String>,
    retry_after_secs: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawNoWake {
    status: Option<u16>,
    user_agents: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawReplay {
    max_body: Option<usize>,
    budget: Option<usize>,
    max_hops: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLog {
    format: Option<String>,
    access: Option<bool>,
}

impl RawWake {
    pub(super) fn into_wake(self, errors: &mut ConfigErrors) -> WakeConfig {
        let d = WakeConfig::default();
        if let Some(path) = self.page_template.as_ref().filter(|p| !p.is_file()) {
            errors.push(format!(
                "`wake.page_template`: {} is not a readable file",
                path.display()
            ));
        }
        WakeConfig {
            page: self.page.unwrap_or(d.page),
            page_template: self.page_template,
            early: self.early.unwrap_or(d.early),
            keep_awake_max: errors.parsed(
                "wake.keep_awake_max",
                self.keep_awake_max,
                d.keep_awake_max,
                duration::parse,
            ),
            retry_after_secs: self.retry_after_secs.unwrap_or(d.retry_after_secs),
        }
    }
}

impl RawNoWake {
    pub(super) fn into_no_wake(self, errors: &mut ConfigErrors) -> NoWakeConfig {
        let d = NoWakeConfig::default();
        let status = self.status.unwrap_or(d.status);
        if !(200..=599).contains(&status) {
            errors.push(format!(
                "`no_wake.status`: {status} is not an HTTP status (200-599)"
            ));
        }
        // Built here, once: they are looked for in every request's user agent.
        let user_agents = match self.user_agents.map(|list| AgentPieces::new(&list)) {
            None => d.user_agents,
            Some(Ok(pieces)) => pieces,
            Some(Err(e)) => {
                errors.push(format!("`no_wake.user_agents`: {e}"));
                d.user_agents
            }
        };
        NoWakeConfig {
            status,
            user_agents,
        }
    }
}

impl RawReplay {
    pub(super) fn into_replay(self) -> ReplayConfig {
        let d = ReplayConfig::default();
        ReplayConfig {
            max_body: self.max_body.unwrap_or(d.max_body),
            budget: self.budget.unwrap_or(d.budget),
            max_hops: self.max_hops.unwrap_or(d.max_hops),
        }
    }
}

impl RawLog {
    pub(super) fn into_log(self, errors: &mut ConfigErrors) -> LogConfig {
        let format = errors.parsed(
            "log.format",
            self.format,
            LogFormat::Text,
            |text| match text {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                other => Err(format!("`{other}` is not a log format (text, json)")),
            },
        );
        LogConfig {
            format,
            access: self.access.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::operator::LogFormat;
    use std::time::Duration;

    /// The sections are read into their types; wrong values are named by key.
    #[test]
    fn sections_are_typed_and_checked() {
        let config = Config::parse(
            r#"
            [wake]
            page = true
            keep_awake_max = "10m"
            [no_wake]
            status = 204
            user_agents = ["MyMonitor"]
            [replay]
            max_body = 4096
            [log]
            format = "json"
            access = true
            "#,
        )
        .unwrap();
        assert!(config.wake.page);
        assert_eq!(config.wake.keep_awake_max, Duration::from_secs(600));
        assert_eq!(config.no_wake.status, 204);
        assert_eq!(config.no_wake.user_agents.pieces(), ["mymonitor"]);
        assert_eq!(config.replay.max_body, 4096);
        assert_eq!(
            (config.log.format, config.log.access),
            (LogFormat::Json, true)
        );
        let errors = Config::parse(
            "[log]\nformat = \"xml\"\n[no_wake]\nstatus = 42\n[wake]\nkeep_awake_max = \"soon\"\nshout = true\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "`log.format`",
            "`no_wake.status`",
            "`wake.keep_awake_max`",
            "`wake.shout`",
        ] {
            assert!(errors.contains(key), "missing {key} in {errors}");
        }
    }
}
