//! Phase 1, route: the request's authority (exactly one: RFC 9112 §3.2, RFC 9113
//! §8.3.1) names an app — `<app>.<domain>`, or a hostname added to the app (a custom
//! domain) — and is what the machine is sent as Host.

use super::ProxyError;
use crate::hostnames::Hostnames;
use crate::machines::{App, Registry};
use http::header::{HOST, HeaderValue};
use http::{Request, Version};
use std::sync::Arc;

/// Where a request is going.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host alone, without port or final dot, lower-cased: what routing reads.
    pub host: String,
    /// `host[:port]` as the client named it: the machine's Host header.
    pub authority: HeaderValue,
}

impl Target {
    /// The authority a request names: an absolute-form URI's (its Host header is
    /// ignored, RFC 9112 §3.2.2), HTTP/2's `:authority` (a `host` naming another is a
    /// bad request), else the one Host header.
    pub fn of<B>(req: &Request<B>) -> Result<Target, ProxyError> {
        let mut hosts = req.headers().get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(ProxyError::AmbiguousHost("two Host headers"));
        }
        let Some(authority) = req.uri().authority() else {
            return header
                .and_then(Target::from_header)
                .ok_or(ProxyError::MissingHost);
        };
        // Userinfo is no part of a Host (RFC 9110 §7.2).
        let named = authority.as_str().rsplit('@').next().unwrap_or_default();
        let differs = header.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(named.as_bytes()));
        if req.version() == Version::HTTP_2 && differs {
            return Err(ProxyError::AmbiguousHost("host differs from :authority"));
        }
        let authority = HeaderValue::from_str(named).map_err(|_| ProxyError::MissingHost)?;
        Target::new(strip_port(named), authority).ok_or(ProxyError::MissingHost)
    }

    fn from_header(value: &HeaderValue) -> Option<Target> {
        let text = value.to_str().ok()?;
        Target::new(strip_port(text), value.clone())
    }

    fn new(host: &str, authority: HeaderValue) -> Option<Target> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        (!host.is_empty()).then_some(Target { host, authority })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The app name in `host` for the first domain it ends with (`<app>.<domain>`).
pub fn app_name<'h>(host: &'h str, domains: &[String]) -> Option<&'h str> {
    domains.iter().find_map(|domain| {
        let app = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
        (!app.is_empty() && !app.contains('.')).then_some(app)
    })
}

/// The app a request for `host` (lower-case) is for: `<app>.<domain>` first (no
/// lookup but the registry's), else the app the hostname was added to.
pub fn route(
    registry: &Registry,
    hostnames: &Hostnames,
    domains: &[String],
    host: &str,
) -> Result<Arc<App>, ProxyError> {
    let app = match app_name(host, domains) {
        Some(name) => registry.app(name),
        None => hostnames.app_of(host).and_then(|name| registry.app(&name)),
    };
    app.ok_or_else(|| ProxyError::UnknownHost(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".into(), "apps.example.com".into()]
    }

    /// The seed's host reaches its app on any configured domain.
    #[test]
    fn app_from_host() {
        assert_eq!(
            app_name("user-functions.localhost", &domains()),
            Some("user-functions")
        );
        assert_eq!(app_name("shop.apps.example.com", &domains()), Some("shop"));
    }

    /// Bare domains, nested names and other domains name no app.
    #[test]
    fn no_app_outside_domains() {
        for host in [
            "localhost",
            "a.b.localhost",
            "evil-localhost",
            "shop.example.com",
        ] {
            assert_eq!(app_name(host, &domains()), None, "{host}");
        }
    }

    fn target(req: Request<()>) -> Result<Target, ProxyError> {
        Target::of(&req)
    }

    /// The port and case of the Host header do not matter for routing; the machine is
    /// sent the authority as written.
    #[test]
    fn host_header_port_and_case() {
        let req = Request::builder()
            .header("host", "User-Functions.LocalHost:8080")
            .body(())
            .unwrap();
        let found = target(req).unwrap();
        assert_eq!(found.host, "user-functions.localhost");
        assert_eq!(found.authority, "User-Functions.LocalHost:8080");
        let req = Request::builder()
            .uri("http://app.localhost:80/x")
            .body(())
            .unwrap();
        assert_eq!(target(req).unwrap().host, "app.localhost");
    }

    /// An absolute-form URI wins over Host (without its userinfo); over HTTP/2 a
    /// differing `host` is refused; two Host headers are refused; none is missing.
    #[test]
    fn one_authority_per_request() {
        let absolute = Request::builder()
            .uri("http://user@a.localhost:8080/")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        let found = target(absolute).unwrap();
        assert_eq!(
            (found.host.as_str(), found.authority.to_str().unwrap()),
            ("a.localhost", "a.localhost:8080")
        );
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://a.localhost/")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        assert!(matches!(target(h2), Err(ProxyError::AmbiguousHost(_))));
        let h2_same = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://a.localhost/")
            .header("host", "A.localhost")
            .body(())
            .unwrap();
        assert_eq!(target(h2_same).unwrap().host, "a.localhost");
        let two = Request::builder()
            .header("host", "a.localhost")
            .header("host", "b.localhost")
            .body(())
            .unwrap();
        assert!(matches!(target(two), Err(ProxyError::AmbiguousHost(_))));
        let none = Request::builder().body(()).unwrap();
        assert!(matches!(target(none), Err(ProxyError::MissingHost)));
    }
}
