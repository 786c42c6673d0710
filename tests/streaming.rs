//! Streams through the wake path: server-sent events, WebSockets, uploads, HTTP/2
//! without TLS, and the limits on client connections.

mod support;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const HOST: &str = "user-functions.localhost";

/// A server-sent event stream delivers its first event before the response ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_events_as_they_are_written() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let mut res = edge.request(APP, "/events?stream=3&interval=500").await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let first = res.chunk().await.unwrap().unwrap();
    assert_eq!(
        &first[..],
        b"data: 0\n\n",
        "only the first event has been written yet"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: 1\n\ndata: 2\n\n");
    edge.shutdown().await;
}

/// Opens a WebSocket to the app's `/ws` echo through the edge.
async fn websocket(edge: &TestEdge) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    let (socket, response) = tokio_tungstenite::client_async(format!("ws://{HOST}/ws"), tcp)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

async fn echo(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(answer, Message::text(text));
}

/// A WebSocket wakes the machine, stays open past the idle timeout without the machine
/// being stopped (while a machine without one is stopped for idleness, twice), and the
/// machine stops once it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_keeps_its_machine_awake() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(300)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let witness = edge.witness().await;

    let mut socket = websocket(&edge).await;
    echo(&mut socket, "hello").await;
    witness.idle_stopped_twice().await;
    assert_eq!(edge.machine(APP, &id).await["state"], "started");
    echo(&mut socket, "still here").await;

    socket.close(None).await.unwrap();
    drop(socket);
    edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    edge.shutdown().await;
}

/// Asserts that the next thing the socket gets is a close frame saying 1001, going away.
pub async fn assert_going_away(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let message = tokio::time::timeout(BOOT, socket.next()).await.unwrap();
    match message {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// A machine stopped on purpose, by a stop or by a destroy, sends its open WebSockets a
/// close frame (1001, going away) first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_machine_closes_its_websockets() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let mut socket = websocket(&edge).await;
    echo(&mut socket, "hello").await;
    let (status, _) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_going_away(&mut socket).await;

    let mut socket = websocket(&edge).await;
    echo(&mut socket, "hello again").await;
    let destroy = machine_path(APP, &id, "?force=true");
    let (status, body) = edge.delete(&destroy).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_going_away(&mut socket).await;
    edge.shutdown().await;
}

/// At shutdown, open WebSockets get a close frame (1001, going away) at once, while
/// another request is still draining (not once the drain is over), and shutdown
/// finishes when that request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_going_away() {
    let edge = TestEdge::start_with(|c| c.edge.drain_timeout = Duration::from_secs(600)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let mut socket = websocket(&edge).await;
    echo(&mut socket, "hello").await;
    // In flight from its first event until its last, a minute later.
    let mut draining = edge.request(APP, "/?stream=2&interval=60000").await;
    draining.chunk().await.unwrap().expect("the first event");

    edge.running.shutdown();
    assert_going_away(&mut socket).await;
    drop(draining);
    tokio::time::timeout(BOOT, edge.running.stopped())
        .await
        .expect("shutdown finishes");
    assert!(machine_pids(&id).is_empty());
}

/// A large upload streams through to the machine, which counts every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_reaches_the_machine() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let size = 16 * 1024 * 1024;
    let res = edge
        .client
        .post(format!("http://{}/upload", edge.running.http_addr))
        .header("host", HOST)
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["body_bytes"], size);
    edge.shutdown().await;
}

/// HTTP/2 with prior knowledge is accepted on the plain-HTTP port; the machine is
/// reached over HTTP/1.1, or over h2c when its port says `h2_backend`, whichever
/// protocol the client speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_and_h2_backends() {
    let edge = TestEdge::start().await;
    for (app, h2_backend) in [("plain", false), ("grpc", true)] {
        edge.create_app(app).await;
        edge.new_machine(app, RUNTIME_IMAGE)
            .config(|c| {
                c["services"][0]["ports"][1]["http_options"] = json!({"h2_backend": h2_backend})
            })
            .launched()
            .await;
    }
    let tcp = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    let mut sender = support::tls::http2_over(tcp).await;
    for (app, seen) in [("plain", "HTTP/1.1"), ("grpc", "HTTP/2.0")] {
        let req = support::tls::get(&format!("{app}.localhost"), "/");
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{app}");
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["version"], seen, "{app}");
    }
    // An HTTP/1.1 client too: the fast path leaves an h2_backend port to hyper's path.
    for (app, seen) in [("plain", "HTTP/1.1"), ("grpc", "HTTP/2.0")] {
        let res = edge
            .client
            .get(format!("http://{}/", edge.running.http_addr))
            .header("host", format!("{app}.localhost"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_11, "{app}");
        assert_eq!(res.status(), StatusCode::OK, "{app}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["version"], seen, "{app} over HTTP/1.1");
    }
    edge.shutdown().await;
}

/// Too many header fields are refused with 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_get_431() {
    let edge = TestEdge::start_with(|c| c.edge.max_header_count = 20).await;
    let mut req = edge
        .client
        .get(format!("http://{}/", edge.running.http_addr))
        .header("host", HOST);
    for i in 0..30 {
        req = req.header(format!("x-filler-{i}"), "1");
    }
    assert_eq!(
        req.send().await.unwrap().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    edge.shutdown().await;
}

/// A kept-alive client connection with no request for the keep-alive timeout is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed() {
    let edge =
        TestEdge::start_with(|c| c.edge.keepalive_timeout = Duration::from_millis(300)).await;
    let mut tcp = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was closed: {closed:?}"
    );
    edge.shutdown().await;
}

/// A client that has not sent its whole request head within `edge.header_read_timeout`
/// is cut off, though the keep-alive timeout is far away; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let edge = TestEdge::start_with(|c| {
        c.edge.header_read_timeout = Duration::from_millis(300);
        c.edge.keepalive_timeout = Duration::from_secs(600);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\nX-Half: ")
        .await
        .unwrap();
    let other = edge.request("nobody", "/").await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "others are served");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(BOOT, slow.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the slow client was cut off: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        !answer.starts_with(b"HTTP/1.1 404"),
        "its request was never served"
    );
    edge.shutdown().await;
}

/// A request head larger than `edge.max_header_bytes` is refused with 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let edge = TestEdge::start_with(|c| c.edge.max_header_bytes = 16 * 1024).await;
    let request = |size: usize| {
        edge.client
            .get(format!("http://{}/", edge.running.http_addr))
            .header("host", "nobody.localhost")
            .header("x-big", "x".repeat(size))
            .send()
    };
    let fits = request(8 * 1024).await.unwrap();
    assert_eq!(
        fits.status(),
        StatusCode::NOT_FOUND,
        "a head that fits is read"
    );
    let refused = request(32 * 1024).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    edge.shutdown().await;
}

/// With `edge.max_connections = 1`, a second client is not served while the first
/// keeps its connection open, and is served as soon as the first goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait() {
    connections_beyond_the_limit(0).await;
}

/// The limit holds across edge workers: with two, the second client still waits for
/// the first (it would have a worker of its own to itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_with_workers() {
    connections_beyond_the_limit(2).await;
}

async fn connections_beyond_the_limit(workers: usize) {
    let edge = TestEdge::start_with(|c| {
        c.edge.max_connections = 1;
        c.edge.workers = workers;
    })
    .await;
    let head = b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n";
    let connect = || tokio::net::TcpStream::connect(edge.running.http_addr);
    let mut first = connect().await.unwrap();
    first.write_all(head).await.unwrap();
    let mut answer = [0u8; 64];
    let n = first.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 404"),
        "the first is served"
    );

    // The kernel completes the second handshake (the backlog), but edgewake does not
    // take the connection while the first holds the only place.
    let mut second = connect().await.unwrap();
    second.write_all(head).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut answer)).await;
    assert!(early.is_err(), "the second waits: {early:?}");
    drop(first);
    let n = tokio::time::timeout(BOOT, second.read(&mut answer))
        .await
        .expect("the second is served once the first has gone")
        .unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 404"));
    edge.shutdown().await;
}
