//! What a machine is sent, and what is refused before any machine wakes: the authority
//! a request was routed by (absolute-form, HTTP/2 `:authority`, two Host headers),
//! CONNECT, transfer codings and malformed chunks; and error bodies that show a client
//! nothing of the edge's internals.

mod support;

use edgewake::drivers::fake::FakeDriver;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "user-functions.localhost";

/// Writes `request` on a new connection to the edge's HTTP port and reads everything
/// it answers until it closes the connection.
async fn raw(edge: &TestEdge, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the edge closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The JSON body of a raw answer from the bundled runtime.
fn json_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"))
}

/// An edge with the app and one stopped machine of the bundled runtime; its id.
async fn edge_with_sleeping_machine() -> (TestEdge, String) {
    let edge = TestEdge::start().await;
    let machine = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    (edge, machine.id)
}

/// Asserts that the machine was never started.
async fn assert_still_asleep(edge: &TestEdge, id: &str) {
    let machine = edge.machine(APP, id).await;
    assert_eq!(machine["state"], "created", "{machine}");
    assert_eq!(count_events(&machine, "start"), 0, "{machine}");
}

/// Sends `request` to an edge whose machine sleeps; asserts it is answered `status` and
/// the machine was not woken; returns the answer.
async fn refused_before_waking(request: &str, status: u16) -> String {
    let (edge, id) = edge_with_sleeping_machine().await;
    let answer = raw(&edge, request).await;
    assert_eq!(status_of(&answer), status, "{answer}");
    assert_still_asleep(&edge, &id).await;
    edge.shutdown().await;
    answer
}

/// An absolute-form request is routed by its URI, and the machine's Host says that
/// authority, not the Host header the client also sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_forwards_the_authority_it_was_routed_by() {
    let (edge, _) = edge_with_sleeping_machine().await;
    let answer = raw(
        &edge,
        &format!(
            "GET http://{HOST}/who HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = json_body(&answer);
    assert_eq!(seen["headers"]["host"], HOST, "{seen}");
    assert_eq!(seen["path"], "/who");
    edge.shutdown().await;
}

/// Two Host headers are a bad request (RFC 9112 §3.2), answered without waking anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_a_bad_request() {
    refused_before_waking(
        &format!(
            "GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        ),
        400,
    )
    .await;
}

/// Over HTTP/2, a `host` that names another authority than `:authority` is a bad
/// request; without `host`, the machine is given the `:authority`, port included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_and_host_must_agree() {
    let (edge, id) = edge_with_sleeping_machine().await;
    let tcp = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    let mut sender = support::tls::http2_over(tcp).await;
    let mut confused = support::tls::get(HOST, "/");
    confused
        .headers_mut()
        .insert("host", "evil.example".parse().unwrap());
    let res = sender.send_request(confused).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_still_asleep(&edge, &id).await;

    let authority = format!("{HOST}:8080");
    let mut plain = support::tls::get(&authority, "/");
    plain.headers_mut().remove("host");
    let res = sender.send_request(plain).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["host"], authority.as_str(), "{seen}");
    edge.shutdown().await;
}

/// CONNECT is refused with 405 (no port of an app is a forward proxy), and the machine
/// is not woken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_not_allowed() {
    let answer = refused_before_waking(
        &format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\nConnection: close\r\n\r\n"),
        405,
    )
    .await;
    let allow = answer.to_ascii_lowercase().contains("\r\nallow: ");
    assert!(allow, "{answer}");
}

/// A transfer coding other than a final `chunked` is answered 501, not passed on
/// undecoded (RFC 9112 §6.1), and wakes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfer_coding_is_not_implemented() {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    refused_before_waking(&request, 501).await;
}

/// A chunk whose size is not hexadecimal is the client's error: 400, and the machine
/// is not woken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_size_is_a_bad_request() {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    );
    refused_before_waking(&request, 400).await;
}

/// A well-formed chunked upload still reaches its machine whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_reaches_the_machine() {
    let (edge, _) = edge_with_sleeping_machine().await;
    let answer = raw(
        &edge,
        &format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(json_body(&answer)["body_bytes"], 11);
    edge.shutdown().await;
}

/// Asserts an error answer's body: a short message with the request id (the one in
/// `fly-request-id`), and none of `secrets`.
async fn assert_short_error(res: reqwest::Response, status: StatusCode, secrets: &[&str]) {
    assert_eq!(res.status(), status);
    let request_id = res.headers()["fly-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = res.text().await.unwrap();
    assert!(body.contains(&request_id), "no request id in {body:?}");
    for secret in secrets {
        assert!(!body.contains(secret), "{secret:?} shown in {body:?}");
    }
}

/// A machine that crashes while waking: the client reads a short message and the
/// request id, not the machine's id or how it exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_wake_shows_no_internals() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(CRASH_IMAGE).created().await.id;
    let res = edge.request(APP, "/").await;
    assert_short_error(res, StatusCode::BAD_GATEWAY, &[&id, "exit", "sh -c"]).await;
    edge.shutdown().await;
}

/// A machine that cannot be reached: the client reads a short message and the request
/// id, not the machine's id, address or the OS error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_machine_shows_no_internals() {
    let fake = Arc::new(FakeDriver::new());
    fake.serve_http();
    let edge = TestEdge::start_with_driver(fake.clone()).await;
    let id = edge.app_with_machine("fake").started().await.id;
    fake.stop_listening(&id);
    let res = edge.request(APP, "/").await;
    assert_short_error(res, StatusCode::BAD_GATEWAY, &[&id, "refused", "127."]).await;
    edge.shutdown().await;
}
