//! Peers that are too slow, or silent, do not keep a connection — or a machine — for
//! ever: HTTP/2 clients that never acknowledge GOAWAY or answer a PING, uploads that
//! drip, clients that stop reading, machines that do not answer or do not read.

mod support;

use edgewake::drivers::fake::FakeDriver;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "user-functions.localhost";
const SHORT: Duration = Duration::from_millis(300);

/// The client preface of HTTP/2 with prior knowledge, then an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// An HTTP/2 client that never acknowledges the edge's GOAWAY (nor its PING) is cut
/// once the grace after an idle close has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_client_ignoring_goaway_is_cut_after_the_grace() {
    let edge = TestEdge::start_with(|c| {
        c.edge.keepalive_timeout = SHORT;
        c.edge.drain_timeout = SHORT;
        c.edge.h2_keepalive_interval = Duration::from_secs(60);
    })
    .await;
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    tcp.write_all(H2_PREFACE).await.unwrap();
    wait::closed_within(&mut tcp, Duration::from_secs(5)).await;
    edge.shutdown().await;
}

/// An HTTP/2 client that does not answer keep-alive PINGs is closed, busy or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_client_not_answering_pings_is_closed() {
    let edge = TestEdge::start_with(|c| {
        c.edge.keepalive_timeout = Duration::from_secs(60);
        c.edge.h2_keepalive_interval = SHORT;
        c.edge.h2_keepalive_timeout = SHORT;
    })
    .await;
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    tcp.write_all(H2_PREFACE).await.unwrap();
    wait::closed_within(&mut tcp, Duration::from_secs(5)).await;
    edge.shutdown().await;
}

/// The start of the edge's answer on `from_edge`, within 10 s.
async fn answer_start(from_edge: &mut tokio::net::tcp::OwnedReadHalf) -> String {
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), from_edge.read(&mut answer))
        .await
        .expect("the edge answered")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// An edge with short client timeouts, a minimum rate and a short idle stop, and one
/// stopped machine of the bundled runtime; the machine's id.
async fn edge_for_slow_clients() -> (TestEdge, String) {
    let edge = TestEdge::start_with(|c| {
        c.edge.client_body_timeout = SHORT;
        c.edge.client_send_timeout = SHORT;
        c.edge.client_min_rate = 1000;
        c.edge.idle_timeout = SHORT;
    })
    .await;
    let machine = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    (edge, machine.id)
}

/// An upload dripping a byte every 100 ms (each gap under the body timeout, the whole
/// far under the minimum rate) is answered 408, and its machine goes back to sleep
/// while the client is still dripping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_upload_is_cut_and_its_machine_sleeps() {
    let (edge, id) = edge_for_slow_clients().await;
    let tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let (mut from_edge, mut to_edge) = tcp.into_split();
    let head = format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\n");
    to_edge.write_all(head.as_bytes()).await.unwrap();
    let drip = tokio::spawn(async move {
        while to_edge.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answer = answer_start(&mut from_edge).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    edge.wait_for_state(APP, &id, "stopped", Duration::from_secs(10))
        .await;
    drip.abort();
    edge.shutdown().await;
}

/// A client that stops reading a large answer has its connection cut, and the machine
/// that was answering it goes back to sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_cut_and_its_machine_sleeps() {
    let (edge, id) = edge_for_slow_clients().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(edge.running.http_addr).await.unwrap();
    let request = format!("GET /?bytes=100000000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    edge.wait_for_state(APP, &id, "started", Duration::from_secs(10))
        .await;
    // The client reads nothing more: the edge's writes stall until it gives up.
    edge.wait_for_state(APP, &id, "stopped", Duration::from_secs(10))
        .await;
    wait::closed_within(&mut tcp, Duration::from_secs(10)).await;
    edge.shutdown().await;
}

/// A machine that does not answer within the machine read timeout: 504, with
/// Retry-After, long before it would have answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_that_does_not_answer_is_a_gateway_timeout() {
    let edge = TestEdge::start_with(|c| c.edge.machine_read_timeout = SHORT).await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let began = tokio::time::Instant::now();
    let res = edge.request(APP, "/?sleep=10000").await;
    assert_eq!(res.status(), reqwest::StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    edge.shutdown().await;
}

/// A machine that stops reading an upload fails it with 504 within the machine send
/// timeout, while the client is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_that_stops_reading_is_a_gateway_timeout() {
    let fake = Arc::new(FakeDriver::new());
    fake.serve_http();
    let edge = TestEdge::start_with_driver_and(fake.clone(), |c| {
        c.edge.machine_send_timeout = SHORT;
        c.edge.machine_read_timeout = Duration::from_secs(30);
    })
    .await;
    edge.app_with_machine("fake").started().await;
    fake.hold_answers();
    let tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let (mut from_edge, mut to_edge) = tcp.into_split();
    let size = 256 * 1024 * 1024;
    let head = format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n\r\n");
    to_edge.write_all(head.as_bytes()).await.unwrap();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        while to_edge.write_all(&chunk).await.is_ok() {}
    });
    let answer = answer_start(&mut from_edge).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    upload.abort();
    fake.release_answers();
    edge.shutdown().await;
}
