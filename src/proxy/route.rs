//! Phase 1, route: the Host names an app: `<app>.<domain>`, or a hostname added to the
//! app (a custom domain).

use super::ProxyError;
use crate::hostnames::Hostnames;
use crate::machines::{App, Registry};
use http::Request;
use std::sync::Arc;

/// The host a request is for, without port, lower-cased: the URI's authority (HTTP/2,
/// absolute-form) or else the Host header.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let header = req.headers().get(http::header::HOST)?.to_str().ok()?;
            strip_port(header).to_string()
        }
    };
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
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

    /// The port and case of the Host header do not matter.
    #[test]
    fn host_header_port_and_case() {
        let req = Request::builder()
            .header("host", "User-Functions.LocalHost:8080")
            .body(())
            .unwrap();
        assert_eq!(
            request_host(&req).as_deref(),
            Some("user-functions.localhost")
        );
        let req = Request::builder()
            .uri("http://app.localhost:80/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("app.localhost"));
    }
}
