//! Phase 1, route: the Host names an app: `<app>.<domain>`, or a hostname added to the
//! app (a custom domain).

use super::ProxyError;
use crate::hostnames::Hostnames;
use crate::machines::{App, Registry};
use http::Request;
use http::uri::Authority;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// The host a request is for, without port, lower-cased (an IPv6 address unbracketed, in
/// its canonical form): from the URI's authority (HTTP/2, absolute-form) or else the Host
/// header, read by the same grammar either way so that one authority routes alike however
/// it comes. `None` when there is none, or it is not an authority, or it has userinfo (an
/// error: RFC 9110 §4.2.4), or brackets around something other than an IPv6 address.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    let header;
    let authority = match req.uri().authority() {
        Some(authority) => authority,
        None => {
            let value = req.headers().get(http::header::HOST)?;
            header = Authority::try_from(value.as_bytes()).ok()?;
            &header
        }
    };
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // The URI grammar takes anything in brackets; only an IPv6 address is a host.
        Some(literal) => literal.parse::<Ipv6Addr>().ok()?.to_string(),
        None => host.trim_end_matches('.').to_ascii_lowercase(),
    };
    (!host.is_empty()).then_some(host)
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

    /// One authority gives one host whether it comes as the Host header or in the URI:
    /// IPv6 brackets go both ways; brackets around no IPv6 address, and userinfo, route
    /// neither way (found by fuzzing: `[::1]:8080` kept its brackets from the URI only,
    /// `[:::1]` was taken from either; `user@app.localhost` went to app `user@app` from
    /// the header but to `app` from the URI).
    #[test]
    fn host_header_and_uri_agree() {
        for (authority, host) in [
            ("[::1]:8080", Some("::1")),
            ("[2001:DB8:0::1]", Some("2001:db8::1")),
            ("[:::1]:8080", None),
            ("[app.localhost]", None),
            ("user@app.localhost", None),
            ("a:b@app.localhost:80", None),
            ("App.localhost.:80", Some("app.localhost")),
        ] {
            let by_header = Request::builder().header("host", authority);
            let by_uri = Request::builder().uri(format!("http://{authority}/"));
            for req in [by_header, by_uri] {
                let req = req.body(()).unwrap();
                assert_eq!(
                    request_host(&req).as_deref(),
                    host,
                    "{authority} in {req:?}"
                );
            }
        }
    }
}
