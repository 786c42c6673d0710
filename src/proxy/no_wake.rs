//! Sleeping without waking: requests that match an app's no-wake rules (paths, user
//! agents, methods; plus the operator's list of monitors and crawlers) are answered by
//! the edge while the app sleeps, and do not keep a running machine awake.

use super::ProxyBody;
use crate::config::NoWakeConfig;
use crate::machines::spec::NoWakeRules;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Response header saying the app sleeps and the edge answered for it.
pub const ASLEEP_HEADER: HeaderName = HeaderName::from_static("edgewake-asleep");

/// Whether a request with this method, path and headers may not wake the app.
pub fn matches(
    rules: Option<&NoWakeRules>,
    operator: &NoWakeConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> bool {
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let with_defaults = rules.is_none_or(|r| r.operator_defaults != Some(false));
    if with_defaults && operator.user_agents.found_in(agent) {
        return true;
    }
    let Some(rules) = rules else { return false };
    rules
        .methods
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method.as_str()))
        || rules.paths.iter().any(|p| path_matches(p, path))
        || agent_matches(&rules.user_agents, agent)
}

/// A case-insensitive piece of the user agent (an app's few pieces, as written in its
/// config: compared in place, nothing allocated).
fn agent_matches(pieces: &[String], agent: &str) -> bool {
    let agent = agent.as_bytes();
    pieces.iter().filter(|p| !p.is_empty()).any(|p| {
        agent
            .windows(p.len())
            .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
    })
}

/// An exact path, or a prefix written with a trailing `*`.
fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// The edge's answer while the app sleeps: the rule's status (else the operator's),
/// `Retry-After`, `edgewake-asleep: true`, and a one-line body (none for HEAD).
pub fn answer(
    app: &str,
    status: Option<u16>,
    operator: &NoWakeConfig,
    retry_after_secs: u32,
    head: bool,
) -> Response<ProxyBody> {
    let text = match head {
        true => Bytes::new(),
        false => Bytes::from(format!("edgewake: {app} is asleep\n")),
    };
    let status = status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .or_else(|| StatusCode::from_u16(operator.status).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let asleep = EdgeAnswer {
        status,
        content_type: "text/plain; charset=utf-8",
        asleep: "true",
        retry_after_secs,
    };
    asleep.response(text)
}

/// An answer the edge gives for a sleeping app (this one's, or the wake page):
/// never cached, saying when to come back and that the app sleeps (or is waking).
pub(super) struct EdgeAnswer {
    pub status: StatusCode,
    pub content_type: &'static str,
    /// The `edgewake-asleep` value: `true`, or `waking`.
    pub asleep: &'static str,
    pub retry_after_secs: u32,
}

impl EdgeAnswer {
    pub fn response(&self, body: Bytes) -> Response<ProxyBody> {
        let body = Full::new(body).map_err(|never| match never {});
        let mut response = Response::new(body.boxed_unsync());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(ASLEEP_HEADER, HeaderValue::from_static(self.asleep));
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(agent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, agent.parse().unwrap());
        h
    }

    /// The operator's list catches a monitor on any path unless the app opts out.
    #[test]
    fn operator_list_catches_monitors() {
        let op = NoWakeConfig::default();
        let monitor =
            headers("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)");
        assert!(matches(None, &op, &Method::GET, "/", &monitor));
        assert!(!matches(
            None,
            &op,
            &Method::GET,
            "/",
            &headers("curl/8.5.0")
        ));
        let opted_out = NoWakeRules {
            operator_defaults: Some(false),
            ..NoWakeRules::default()
        };
        assert!(!matches(Some(&opted_out), &op, &Method::GET, "/", &monitor));
    }

    /// Paths (exact or prefix*), methods and user agents of the app's rules match.
    #[test]
    fn app_rules_match() {
        let op = NoWakeConfig::default();
        let rules = NoWakeRules {
            paths: vec!["/healthz".into(), "/.well-known/*".into()],
            methods: vec!["options".into()],
            user_agents: vec!["my-pinger".into()],
            ..NoWakeRules::default()
        };
        let any = headers("Mozilla/5.0");
        let r = Some(&rules);
        assert!(matches(r, &op, &Method::GET, "/healthz", &any));
        assert!(!matches(r, &op, &Method::GET, "/healthz/deep", &any));
        assert!(matches(r, &op, &Method::GET, "/.well-known/x", &any));
        assert!(matches(r, &op, &Method::OPTIONS, "/", &any));
        assert!(matches(r, &op, &Method::GET, "/", &headers("My-Pinger/1")));
        assert!(!matches(r, &op, &Method::POST, "/api", &any));
    }

    /// Pieces match whatever the case on either side; an empty piece matches nothing,
    /// a piece longer than the agent neither.
    #[test]
    fn agent_pieces_ignore_case() {
        let op = NoWakeConfig::default();
        assert!(
            op.user_agents
                .found_in("mozilla/5.0 (compatible; GOOGLEBOT/2.1)")
        );
        assert!(!op.user_agents.found_in(""));
        let pieces = ["".to_string(), "MY-Pinger".to_string()];
        assert!(agent_matches(&pieces, "x my-pINGER/1"));
        assert!(!agent_matches(&pieces, "my-ping"));
        assert!(!agent_matches(&pieces[..1], "anything"));
        let none = crate::config::AgentPieces::new::<&str>(&[]).unwrap();
        assert!(!none.found_in("UptimeRobot"));
        // An operator's empty piece would match every agent: it is left out.
        let listed = crate::config::AgentPieces::new(&["", "MyMon"]).unwrap();
        assert!(!listed.found_in("curl/8"));
        assert!(listed.found_in("x MYMON/1"));
    }

    /// The answer says the app sleeps, when to come back, and is never cached.
    #[test]
    fn sleeping_answer() {
        let op = NoWakeConfig::default();
        let r = answer("shop", None, &op, 2, true);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["edgewake-asleep"], "true");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(
            answer("shop", Some(200), &op, 2, false).status(),
            StatusCode::OK
        );
    }
}
