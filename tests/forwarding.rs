//! The headers between client and machine, end to end through the edge: what the
//! machine is told about the request, and what the client is told about the answer.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::*;

/// The machine gets X-Forwarded-For with the peer appended to the client's entries, the
/// edge's facts (`Fly-Client-IP`, `Fly-Region`, `X-Forwarded-*`) whatever the client
/// claimed, `Via` appended, and no hop-by-hop header (nor any the `Connection` header
/// names); the client gets `Via`, `Fly-Request-Id: <ULID>-<region>` and the machine's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_end_to_end() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let res = edge
        .request_to(APP, "/forwarded")
        .header("x-forwarded-for", "198.51.100.1")
        .header("fly-client-ip", "6.6.6.6")
        .header("fly-region", "nowhere")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("via", "1.0 corporate-proxy")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "for this hop only")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| res.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("via"), "1.1 edgewake");
    assert_eq!(header("edgewake-machine"), id);
    let request_id = header("fly-request-id");
    let (ulid, region) = request_id.split_once('-').unwrap();
    assert_eq!(region, "ams", "{request_id}");
    assert!(
        ulid.len() == 26 && ulid.chars().all(|c| c.is_ascii_alphanumeric()),
        "{request_id}"
    );

    let seen: Value = res.json().await.unwrap();
    let seen = &seen["headers"];
    for (name, value) in [
        ("x-forwarded-for", "198.51.100.1, 127.0.0.1"),
        ("fly-client-ip", "127.0.0.1"),
        ("fly-region", "ams"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-ssl", "off"),
        ("x-forwarded-port", "80"),
        ("fly-forwarded-port", "80"),
        ("x-forwarded-host", "user-functions.localhost"),
        ("via", "1.0 corporate-proxy, 1.1 edgewake"),
    ] {
        assert_eq!(seen[name], value, "{name}: {seen}");
    }
    for hop in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(seen[hop].is_null(), "{hop} reached the machine: {seen}");
    }
    edge.shutdown().await;
}
