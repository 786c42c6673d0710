//! Micro-benchmarks of the proxy's per-request work: host → app name, header rewriting,
//! the wake path's bookkeeping (in-flight guard, activity clock), and the read of the
//! reloadable settings.
//! Run: `cargo bench --bench hot_path`.

use criterion::{Criterion, criterion_group, criterion_main};
use edgewake::machines::activity::{Activity, InFlight};
use edgewake::proxy::headers::{self, Forwarded};
use edgewake::proxy::route;
use http::HeaderMap;
use std::hint::black_box;
use std::sync::Arc;

fn host_to_app(c: &mut Criterion) {
    let domains = vec!["localhost".to_string(), "apps.example.com".to_string()];
    c.bench_function("host_to_app_name", |b| {
        b.iter(|| route::app_name(black_box("user-functions.apps.example.com"), &domains))
    });
}

/// A browser-like request's headers.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "user-functions.localhost"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "session=abcdef0123456789"),
    ] {
        h.insert(name, value.parse().unwrap());
    }
    h
}

static AUTHORITY: http::HeaderValue = http::HeaderValue::from_static("user-functions.localhost");

/// What the edge knows about a browser's connection on `scheme`'s usual port.
fn forwarded(scheme: &'static str, public_port: u16) -> Forwarded<'static> {
    Forwarded {
        client_ip: "203.0.113.7".parse().unwrap(),
        peer_ip: "203.0.113.7".parse().unwrap(),
        host: "user-functions.localhost",
        authority: &AUTHORITY,
        scheme,
        public_port,
        edge_region: "ams",
    }
}

fn header_rewriting(c: &mut Criterion) {
    let fwd = forwarded("https", 443);
    let template = request_headers();
    c.bench_function("headers_to_machine", |b| {
        b.iter_batched(
            || template.clone(),
            |mut h| headers::to_machine(&mut h, &fwd),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut response = HeaderMap::new();
    response.insert("content-type", "application/json".parse().unwrap());
    response.insert("content-length", "454".parse().unwrap());
    c.bench_function("headers_to_client", |b| {
        b.iter_batched(
            || response.clone(),
            |mut h| {
                headers::to_client(
                    &mut h,
                    "3d8d413b29d089",
                    "ams",
                    "01JC9Z6B8K3M4N5P6Q7R8S9T0V-ams",
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

/// The fast path's whole head work for one request: the browser-like request head
/// parsed from its buffer, rewritten for the machine and written; the machine's answer
/// head parsed and rewritten for the client.
fn fast_path_heads(c: &mut Criterion) {
    use edgewake::proxy::h1::head::{self, Parsed};
    use edgewake::proxy::h1::response::{self, EdgeFacts};
    let fwd = forwarded("http", 80);
    let mut raw = String::from("GET /index.html?q=1 HTTP/1.1\r\n");
    for (name, value) in &request_headers() {
        raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    let mut out = Vec::with_capacity(4096);
    // As on a kept-alive connection: the map of the last request is reused.
    let mut spare = http::HeaderMap::new();
    c.bench_function("fast_path_request_head", |b| {
        b.iter_batched(
            || bytes::BytesMut::from(raw.as_str()),
            |mut buf| {
                let Parsed::Head(mut parsed) = head::parse_request(&mut buf, 100, &mut spare)
                else {
                    panic!("a plain GET is the fast path's")
                };
                headers::strip_hop_by_hop(parsed.req.headers_mut());
                out.clear();
                head::write_request_head(&mut out, &parsed.req, &fwd);
                head::finish_request_head(&mut out, false);
                let written = out.len();
                head::recycle(parsed, &mut spare);
                black_box(written)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 454\r\n\
                   date: Sun, 29 Nov 2026 10:00:00 GMT\r\n\r\n";
    let facts = EdgeFacts {
        request_id: "01JC9Z6B8K3M4N5P6Q7R8S9T0V-ams",
        machine_id: "3d8d413b29d089",
        region: "ams",
        head_request: false,
        close: false,
        waited: None,
    };
    c.bench_function("fast_path_response_head", |b| {
        b.iter(|| {
            out.clear();
            black_box(response::parse_response(answer, &facts, &mut out).unwrap())
        })
    });
}

fn wake_bookkeeping(c: &mut Criterion) {
    let activity = Arc::new(Activity::new());
    c.bench_function("in_flight_enter_and_drop", |b| {
        b.iter(|| drop(black_box(InFlight::enter(&activity))))
    });
    c.bench_function("activity_idle_for", |b| {
        b.iter(|| black_box(activity.idle_for()))
    });
}

/// The no-wake check every request goes through: a browser's user agent against the
/// operator's list of monitors and crawlers (no match: the whole list is scanned).
fn no_wake_rules(c: &mut Criterion) {
    let operator = edgewake::config::NoWakeConfig::default();
    let headers = request_headers();
    c.bench_function("no_wake_check_browser", |b| {
        b.iter(|| {
            edgewake::proxy::no_wake::matches(
                None,
                &operator,
                &http::Method::GET,
                black_box("/index.html"),
                black_box(&headers),
            )
        })
    });
}

/// What reloadable settings cost a request: the proxy reads its `ArcSwap` snapshot once
/// per request (a guard, no reference count), against a plain field read.
fn settings_snapshot(c: &mut Criterion) {
    let domains = vec!["localhost".to_string(), "apps.example.com".to_string()];
    let plain = domains.clone();
    let swapped = arc_swap::ArcSwap::from_pointee(domains);
    c.bench_function("settings_plain_field", |b| {
        b.iter(|| black_box(&plain).len())
    });
    c.bench_function("settings_arc_swap_load", |b| {
        b.iter(|| black_box(&swapped).load().len())
    });
}

criterion_group!(
    benches,
    host_to_app,
    header_rewriting,
    fast_path_heads,
    wake_bookkeeping,
    no_wake_rules,
    settings_snapshot
);
criterion_main!(benches);
