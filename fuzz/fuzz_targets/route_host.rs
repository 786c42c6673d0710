//! Host routing (`proxy::route::request_host`, `app_name`) on any authority a client can
//! send: as a Host header (HTTP/1.1 origin-form) or in the request target (absolute-form,
//! HTTP/2 `:authority`).
//!
//! Checked beyond "does not panic":
//! - a host that routes is non-empty, lower-case, has no port and no trailing dot;
//! - the same authority routes the same whichever way it comes;
//! - an app name is one label, and `<app>.<domain>` is exactly the host.
#![no_main]

use edgewake::proxy::route::{app_name, request_host};
use http::{HeaderValue, Request, Uri};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;

fuzz_target!(|bytes: &[u8]| {
    let domains = vec!["localhost".to_string(), "apps.example.com".to_string()];
    let by_header = HeaderValue::from_bytes(bytes).ok().map(|host| {
        let req = Request::builder().header(http::header::HOST, host);
        request_host(&req.body(()).expect("a request with a valid header"))
    });
    let by_target = authority_uri(bytes).map(|uri| {
        let req = Request::builder().uri(uri);
        request_host(&req.body(()).expect("a request with a valid URI"))
    });
    for host in [&by_header, &by_target].into_iter().flatten().flatten() {
        check_host(host);
        if let Some(app) = app_name(host, &domains) {
            check_app(host, app, &domains);
        }
    }
    if let (Some(header), Some(target)) = (&by_header, &by_target) {
        assert_eq!(header, target, "Host and :authority route differently");
    }
});

/// `http://<bytes>/` when `bytes` is exactly its authority.
fn authority_uri(bytes: &[u8]) -> Option<Uri> {
    let text = std::str::from_utf8(bytes).ok()?;
    let uri: Uri = format!("http://{text}/").parse().ok()?;
    (uri.authority()?.as_str() == text).then_some(uri)
}

fn check_host(host: &str) {
    assert!(!host.is_empty());
    assert!(!host.ends_with('.'), "{host:?} ends with a dot");
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "{host:?} is not lower-case"
    );
    // A colon is only part of an IPv6 literal, never a port.
    assert!(
        !host.contains(':') || host.parse::<Ipv6Addr>().is_ok(),
        "{host:?} keeps a port"
    );
}

fn check_app(host: &str, app: &str, domains: &[String]) {
    assert!(!app.is_empty() && !app.contains('.'), "app {app:?}");
    assert!(
        domains.iter().any(|d| host == format!("{app}.{d}")),
        "{host:?} is not {app:?} on a domain"
    );
}
