//! The HTTP/1.1 fast path over raw sockets: pipelining, bodies by their framing,
//! Connection: close, and the hand-over to hyper's path (upgrades, chunked uploads,
//! malformed requests refused as hyper refuses them).

mod support;

use serde_json::Value;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "user-functions.localhost";

/// One response read off a raw connection: status, lower-cased head, body.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads one response (Content-Length or chunked body) from `tcp`, keeping what
/// follows it in `buf`.
async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Raw {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_some(tcp, buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    buf.drain(..head_end);
    let body = if let Some(len) = header(&head, "content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            read_some(tcp, buf).await;
        }
        buf.drain(..len).collect()
    } else if header(&head, "transfer-encoding").is_some() {
        read_chunked(tcp, buf).await
    } else {
        Vec::new()
    };
    Raw { status, head, body }
}

async fn read_chunked(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            read_some(tcp, buf).await;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
        while buf.len() < line_end + 2 + size + 2 {
            read_some(tcp, buf).await;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return body;
        }
    }
}

async fn read_some(tcp: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let read = tokio::time::timeout(BOOT, tcp.read(&mut chunk)).await;
    let n = read.expect("the edge answers").unwrap();
    assert!(
        n > 0,
        "closed early; so far: {}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// An edge with the function runtime's machine started, and a raw connection to it.
async fn edge_and_connection() -> (TestEdge, TcpStream) {
    edge_and_connection_on(0).await
}

/// `edge_and_connection`, with client connections served on `workers` edge workers.
async fn edge_and_connection_on(workers: usize) -> (TestEdge, TcpStream) {
    let edge = TestEdge::start_with(|c| c.edge.workers = workers).await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    (edge, tcp)
}

/// Waits for the edge to close `tcp` (and fails if it does not within BOOT).
async fn assert_closed(tcp: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(BOOT, tcp.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was closed"
    );
}

/// Two requests written at once are answered in order, each with the edge's headers,
/// and the machine sees the forwarding headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (edge, mut tcp) = edge_and_connection().await;
    let two = format!(
        "GET /first HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /second?x=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    tcp.write_all(two.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut tcp, &mut buf).await;
    let second = read_response(&mut tcp, &mut buf).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.json()["path"], "/first");
    assert_eq!(second.json()["path"], "/second?x=1");
    for answer in [&first, &second] {
        assert!(header(&answer.head, "fly-request-id").is_some_and(|id| id.ends_with("-ams")));
        assert!(header(&answer.head, "edgewake-machine").is_some());
        assert_eq!(header(&answer.head, "via"), Some("1.1 edgewake"));
    }
    let seen = &first.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["fly-client-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["via"], "1.1 edgewake");
    assert!(
        seen.get("connection").is_none(),
        "hop-by-hop headers are not forwarded"
    );
    edge.shutdown().await;
}

/// A request sent while the one before it is still waiting for its slow machine is
/// kept and answered after it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_during_a_slow_answer_are_kept() {
    let (edge, mut tcp) = edge_and_connection().await;
    let slow = format!("GET /slow?sleep=400 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(slow.as_bytes()).await.unwrap();
    // Well after the edge began watching the client during the machine's wait.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let next = format!("GET /next HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(next.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut tcp, &mut buf).await;
    let second = read_response(&mut tcp, &mut buf).await;
    assert_eq!(first.json()["path"], "/slow?sleep=400");
    assert_eq!(second.json()["path"], "/next");
    edge.shutdown().await;
}

/// A client that hangs up while its machine is slow to answer is let go at once: the
/// machine is no longer counted busy with it, so it can idle-stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_during_a_slow_answer_is_let_go() {
    let edge = TestEdge::start_with(|c| {
        c.edge.idle_timeout = Duration::from_secs(1);
        c.edge.reap_interval = Duration::from_millis(200);
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let slow = format!("GET /?sleep=60000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(slow.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    // Held for the machine's full minute, it would stay busy and never idle-stop.
    edge.wait_for_state(APP, &id, "stopped", Duration::from_secs(20))
        .await;
    edge.shutdown().await;
}

/// A Content-Length body (hyper's path, which keeps it for a replay) reaches the
/// machine whole, in pieces or pipelined, and the connection carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_bodies_reach_the_machine() {
    let (edge, mut tcp) = edge_and_connection().await;
    let head = format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"01234").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // the body arrives in two reads
    let next = format!("56789GET /after HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(next.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let upload = read_response(&mut tcp, &mut buf).await;
    assert_eq!(upload.json()["method"], "POST");
    assert_eq!(upload.json()["body_bytes"], 10);
    let after = read_response(&mut tcp, &mut buf).await;
    assert_eq!(after.json()["path"], "/after");
    edge.shutdown().await;
}

/// A chunked response (a server-sent event stream) is passed on as framed, and the
/// connection carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_are_passed_on() {
    let (edge, mut tcp) = edge_and_connection().await;
    let two = format!(
        "GET /events?stream=3&interval=10 HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /next HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    tcp.write_all(two.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let events = read_response(&mut tcp, &mut buf).await;
    assert_eq!(header(&events.head, "transfer-encoding"), Some("chunked"));
    assert_eq!(events.body, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
    let next = read_response(&mut tcp, &mut buf).await;
    assert_eq!(next.json()["path"], "/next");
    edge.shutdown().await;
}

/// A chunked upload goes to hyper's path, which passes the whole body on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_reach_the_machine() {
    let (edge, mut tcp) = edge_and_connection().await;
    let req = format!(
        "POST /up HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let answer = read_response(&mut tcp, &mut buf).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["body_bytes"], 8);
    edge.shutdown().await;
}

/// `Connection: close` is answered with `connection: close`, then the edge closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured() {
    let (edge, mut tcp) = edge_and_connection().await;
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let answer = read_response(&mut tcp, &mut buf).await;
    assert_eq!(answer.status, 200);
    assert_eq!(header(&answer.head, "connection"), Some("close"));
    assert_closed(&mut tcp).await;
    edge.shutdown().await;
}

/// A kept-alive connection on the fast path with no request for the keep-alive
/// timeout is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_fast_connections_are_closed() {
    let edge =
        TestEdge::start_with(|c| c.edge.keepalive_timeout = Duration::from_millis(300)).await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut tcp, &mut buf).await.status, 200);
    assert_closed(&mut tcp).await;
    edge.shutdown().await;
}

/// After requests on the fast path, a WebSocket upgrade on the same connection is
/// switched by hyper's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_after_fast_requests_falls_back() {
    upgrade_after_fast_requests(0).await;
}

/// The same on an edge worker: the fast path and hyper's path serve the connection
/// there, and the machine's tunnel is pumped there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_after_fast_requests_falls_back_on_a_worker() {
    upgrade_after_fast_requests(2).await;
}

async fn upgrade_after_fast_requests(workers: usize) {
    let (edge, mut tcp) = edge_and_connection_on(workers).await;
    let mut buf = Vec::new();
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp, &mut buf).await.status, 200);
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let switched = read_response(&mut tcp, &mut buf).await;
    assert_eq!(switched.status, 101);
    assert_eq!(header(&switched.head, "upgrade"), Some("websocket"));
    edge.shutdown().await;
}

/// Requests a proxy could read differently from the machine (both framings, two
/// lengths, a bad length, obs-fold, a coding other than a final chunked) are refused with 400 and the connection
/// closed, also after a request the fast path served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_get_400() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let bad = [
        format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        ),
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: -3\r\n\r\nabc"),
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: 1\r\n folded\r\n\r\n"),
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
    ];
    for request in &bad {
        let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
        let mut buf = Vec::new();
        let good = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        tcp.write_all(good.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut tcp, &mut buf).await.status, 200);
        tcp.write_all(request.as_bytes()).await.unwrap();
        let refused = read_response(&mut tcp, &mut buf).await;
        assert_eq!(refused.status, 400, "{request:?}");
        assert_closed(&mut tcp).await;
    }
    edge.shutdown().await;
}

/// Bare LF line ends are read as hyper reads them (RFC 9112 §2.2 lets a recipient):
/// the head is written to the machine again with CRLF, so it cannot read it otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_heads_are_read_as_hyper_reads_them() {
    let (edge, mut tcp) = edge_and_connection().await;
    tcp.write_all(format!("GET /lf HTTP/1.1\nHost: {HOST}\n\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let answer = read_response(&mut tcp, &mut buf).await;
    assert_eq!(answer.json()["path"], "/lf");
    edge.shutdown().await;
}

/// Shutdown ends the fast path's kept-alive connections itself, long before the drain
/// timeout would cut them: one waiting for its next request is closed at once, one
/// with an answer under way gets all of it and is then closed; shutdown then finishes
/// and the machine is gone (served on an edge worker, each connection under its own
/// token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_kept_alive_connections() {
    let edge = TestEdge::start_with(|c| {
        c.edge.workers = 1;
        c.edge.drain_timeout = Duration::from_secs(600);
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut idle = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let mut busy = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {APP}.localhost\r\n\r\n");
    let (mut idle_buf, mut busy_buf) = (Vec::new(), Vec::new());
    idle.write_all(get("/first").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut idle, &mut idle_buf).await.status, 200);
    // An event stream: under way from its first event until its last, 700 ms later.
    busy.write_all(get("/?stream=2&interval=700").as_bytes())
        .await
        .unwrap();
    while !String::from_utf8_lossy(&busy_buf).contains("data: 0") {
        read_some(&mut busy, &mut busy_buf).await;
    }
    edge.running.shutdown();
    assert_closed(&mut idle).await;
    let answer = read_response(&mut busy, &mut busy_buf).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body, b"data: 0\n\ndata: 1\n\n",
        "the answer is whole"
    );
    assert_closed(&mut busy).await;
    let stopped = tokio::time::timeout(BOOT, edge.running.stopped()).await;
    assert!(stopped.is_ok(), "no connection is left to drain");
    assert!(machine_pids(&id).is_empty(), "the machine is stopped");
}
