//! Phase 1, route: the request's authority (exactly one: RFC 9112 §3.2, RFC 9113
//! §8.3.1) names an app — `<app>.<domain>`, or a hostname added to the app (a custom
//! domain) — and is what the machine is sent as Host.

use super::ProxyError;
use crate::hostnames::Hostnames;
use crate::machines::{App, Registry};
use http::header::{HOST, HeaderValue};
use http::uri::Authority;
use http::{Request, Version};
use std::net::Ipv6Addr;
use std::sync::Arc;

/// Where a request is going.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host alone, without port or final dot, lower-cased (an IPv6 address
    /// unbracketed, in its canonical form): what routing reads.
    pub host: String,
    /// `host[:port]` as the client named it: the machine's Host header.
    pub authority: HeaderValue,
}

impl Target {
    /// The authority a request names: an absolute-form URI's (its Host header is
    /// ignored, RFC 9112 §3.2.2), HTTP/2's `:authority` (a `host` naming another is a
    /// bad request), else the one Host header; read by the same grammar either way, so
    /// one authority routes alike however it comes.
    pub fn of<B>(req: &Request<B>) -> Result<Target, ProxyError> {
        let mut hosts = req.headers().get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(ProxyError::AmbiguousHost("two Host headers"));
        }
        let Some(authority) = req.uri().authority() else {
            let value = header.ok_or(ProxyError::MissingHost)?;
            let authority =
                Authority::try_from(value.as_bytes()).map_err(|_| ProxyError::MissingHost)?;
            return Target::new(&authority, value.clone());
        };
        let differs = header.is_some_and(|h| {
            !h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        });
        if req.version() == Version::HTTP_2 && differs {
            return Err(ProxyError::AmbiguousHost("host differs from :authority"));
        }
        let value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::MissingHost)?;
        Target::new(authority, value)
    }

    fn new(authority: &Authority, value: HeaderValue) -> Result<Target, ProxyError> {
        let host = host_of(authority).ok_or(ProxyError::MissingHost)?;
        Ok(Target {
            host,
            authority: value,
        })
    }
}

/// The host a request is for (see `Target::of`); `None` when it names none.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    Target::of(req).ok().map(|target| target.host)
}

/// The routed host of an authority; `None` when it has userinfo (an error: RFC 9110
/// §4.2.4), or brackets around something other than an IPv6 address, or no host.
fn host_of(authority: &Authority) -> Option<String> {
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

    /// An absolute-form URI wins over Host; over HTTP/2 a differing `host` is refused;
    /// two Host headers are refused; none, or one with userinfo, is missing.
    #[test]
    fn one_authority_per_request() {
        let userinfo = Request::builder()
            .uri("http://user@a.localhost:8080/")
            .body(())
            .unwrap();
        assert!(matches!(target(userinfo), Err(ProxyError::MissingHost)));
        let absolute = Request::builder()
            .uri("http://a.localhost:8080/")
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
