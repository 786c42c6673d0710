//! HTTP/2 streams without a body, answered by HTTP/1.1 machines over a machine
//! connection the edge keeps (lent to the stream, parked again at its end): the answer
//! reaches the client whole whatever its framing (Content-Length small, empty or large,
//! chunked events as they are written, HEAD's length without a body), over TLS and h2c,
//! with the edge's headers (forwarding, keep-awake) handled as on other paths; one
//! machine connection (per worker) carries stream after stream and the HTTP/1.1 fast
//! path's requests, within `max_machine_connections`; a stream the client resets
//! leaves its machine free to idle-stop; a stream with a body still reaches the
//! machine whole.

mod support;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::tls::{get, h2c};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "user-functions.localhost";
/// How long one answer may take before the test calls it hung.
const ANSWERED: Duration = Duration::from_secs(10);
const MB: usize = 1024 * 1024;

/// An HTTP/2 connection over TLS (ALPN h2) to the edge's HTTPS port.
async fn h2_over_tls(edge: &TestEdge) -> http2::SendRequest<Empty<Bytes>> {
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    let config = support::tls::trusting(&ca, &[b"h2"]);
    let tls = support::tls::connect(edge.running.https_addr, HOST, config)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    support::tls::http2_over(tls).await
}

/// An answer read whole.
struct Whole {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Whole {
    /// The Content-Length header, as a number.
    fn content_length(&self) -> Option<usize> {
        let value = self.headers.get("content-length")?;
        Some(value.to_str().unwrap().parse().unwrap())
    }

    /// The body as the runtime's JSON description of the request it saw.
    fn seen(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads an answer whole, failing if that takes longer than `ANSWERED`.
async fn whole(res: Response<Incoming>) -> Whole {
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(ANSWERED, body.collect())
        .await
        .expect("the whole body arrived")
        .expect("the body was not cut")
        .to_bytes();
    Whole {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends a bodiless request on `sender` and reads its answer whole.
async fn answer(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Whole {
    let res = tokio::time::timeout(ANSWERED, sender.send_request(req))
        .await
        .expect("the answer's head arrived")
        .expect("the stream was answered");
    whole(res).await
}

/// Asserts that a GET of `path` on `sender` gets the runtime's own answer to it.
async fn assert_own_answer(sender: &mut http2::SendRequest<Empty<Bytes>>, path: &str) {
    let res = answer(sender, get(HOST, path)).await;
    assert_eq!(res.status, StatusCode::OK, "{path}");
    assert_eq!(res.seen()["path"], path);
}

/// An edge with a started machine of the runtime in `APP`, and an h2c connection to it.
async fn edge_and_h2c() -> (TestEdge, http2::SendRequest<Empty<Bytes>>) {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let sender = h2c(&edge).await;
    (edge, sender)
}

/// Over h2c and over TLS, bodiless streams get Content-Length answers whole (the
/// machine's JSON, an empty body, 1 MB) with the edge's headers both ways and every
/// value of a repeated header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_answers_arrive_whole_over_h2c_and_tls() {
    let edge = TestEdge::start_with(|c| {
        let hosts = [HOST.to_string()];
        edgewake::tls::dev_ca::generate(&c.tls.certs_dir, &hosts).unwrap();
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let clients = [
        (h2c(&edge).await, "http", "80"),
        (h2_over_tls(&edge).await, "https", "443"),
    ];
    for (mut sender, proto, port) in clients {
        let path = "/hello?header=set-cookie:a=1&header=set-cookie:b=2";
        let json = answer(&mut sender, get(HOST, path)).await;
        assert_eq!(json.status, StatusCode::OK, "{proto}");
        assert_eq!(json.content_length(), Some(json.body.len()), "{proto}");
        assert_eq!(json.headers["edgewake-machine"], id.as_str());
        assert!(json.headers.contains_key("fly-request-id"), "{proto}");
        let cookies: Vec<_> = json.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"], "{proto}");
        let seen = json.seen();
        assert_eq!(seen["method"], "GET");
        assert_eq!(seen["path"], path);
        assert_eq!(
            seen["version"], "HTTP/1.1",
            "the machine is reached over HTTP/1.1"
        );
        assert_eq!(seen["body_bytes"], 0);
        for (name, value) in [
            ("x-forwarded-proto", proto),
            ("x-forwarded-port", port),
            ("fly-client-ip", "127.0.0.1"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-host", HOST),
        ] {
            assert_eq!(seen["headers"][name], value, "{name} over {proto}: {seen}");
        }

        let empty = answer(&mut sender, get(HOST, "/?bytes=0")).await;
        assert_eq!(empty.status, StatusCode::OK, "{proto}");
        assert_eq!(empty.content_length(), Some(0), "{proto}");
        assert!(empty.body.is_empty(), "{proto}");

        let large = answer(&mut sender, get(HOST, &format!("/?bytes={MB}"))).await;
        assert_eq!(large.status, StatusCode::OK, "{proto}");
        assert_eq!(large.content_length(), Some(MB), "{proto}");
        assert_eq!(large.body.len(), MB, "{proto}");
        assert!(large.body.iter().all(|b| *b == b'x'), "{proto}");
    }
    edge.shutdown().await;
}

/// Twenty streams at once on one connection, JSON answers and downloads of twenty
/// different lengths, each get their own answer, none mixed with another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_each_get_their_own_answer() {
    let (edge, sender) = edge_and_h2c().await;
    let streams: Vec<_> = (0..20)
        .map(|i| {
            let mut sender = sender.clone();
            let path = match i % 2 {
                0 => format!("/stream/{i}"),
                _ => format!("/?bytes={}", 256 * 1024 + i),
            };
            tokio::spawn(async move { (answer(&mut sender, get(HOST, &path)).await, i) })
        })
        .collect();
    for stream in streams {
        let (res, i) = stream.await.unwrap();
        assert_eq!(res.status, StatusCode::OK, "stream {i}");
        if i % 2 == 0 {
            assert_eq!(res.seen()["path"], format!("/stream/{i}"));
        } else {
            assert_eq!(res.body.len(), 256 * 1024 + i, "stream {i}");
            assert!(res.body.iter().all(|b| *b == b'x'), "stream {i}");
        }
    }
    edge.shutdown().await;
}

/// Server-sent events (a chunked answer) from a machine the stream wakes arrive as the
/// machine writes them, the first long before the last; the next stream then gets its
/// own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_as_they_are_written() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let mut sender = h2c(&edge).await;
    let req = get(HOST, "/events?stream=3&interval=500");
    let res = tokio::time::timeout(ANSWERED, sender.send_request(req))
        .await
        .expect("the answer's head arrived")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(!res.headers().contains_key("content-length"));
    let mut body = res.into_body();
    let mut events = Vec::new();
    while let Some(frame) = tokio::time::timeout(ANSWERED, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            events.push((data, Instant::now()));
        }
    }
    assert_eq!(
        events[0].0, "data: 0\n\n",
        "the first event came alone, before the next was written"
    );
    let all: Vec<u8> = events.iter().flat_map(|(data, _)| data.to_vec()).collect();
    assert_eq!(all, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
    let (first, last) = (events[0].1, events.last().unwrap().1);
    // The machine writes the last event 1 s after the first: kept back, the first
    // would have come with it.
    assert!(
        last - first >= Duration::from_millis(500),
        "the first event came {:?} before the last",
        last - first
    );
    assert_own_answer(&mut sender, "/after-events").await;
    edge.shutdown().await;
}

/// A HEAD gets no body: with the machine's Content-Length for a download, and at
/// once for an event stream; the streams after each get their own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_no_body_and_keeps_content_length() {
    let (edge, mut sender) = edge_and_h2c().await;
    let head = |path: &str| {
        Request::head(format!("https://{HOST}{path}"))
            .header("host", HOST)
            .body(Empty::new())
            .unwrap()
    };
    for _ in 0..2 {
        let res = answer(&mut sender, head(&format!("/?bytes={MB}"))).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.content_length(), Some(MB));
        assert!(res.body.is_empty(), "{} bytes after a HEAD", res.body.len());
        assert_own_answer(&mut sender, "/after-head").await;
    }
    let res = answer(&mut sender, head("/events?stream=3&interval=60000")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "text/event-stream");
    assert!(res.body.is_empty(), "{} bytes after a HEAD", res.body.len());
    assert_own_answer(&mut sender, "/after-head-of-events").await;
    edge.shutdown().await;
}

/// An answer after which the machine closes its connection (`Connection: close`)
/// reaches the client, and the next stream is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_closing_its_connection_does_not_fail_the_next_stream() {
    let (edge, mut sender) = edge_and_h2c().await;
    for i in 0..3 {
        let path = format!("/closing/{i}?header=connection:close");
        let res = answer(&mut sender, get(HOST, &path)).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert_eq!(res.seen()["path"], path.as_str());
        assert_own_answer(&mut sender, &format!("/after-close/{i}")).await;
    }
    edge.shutdown().await;
}

/// Asserts that a GET of `/` on `sender` gets the fake machine's answer: its id.
async fn assert_fake_answer(sender: &mut http2::SendRequest<Empty<Bytes>>, id: &str) {
    let res = answer(sender, get(HOST, "/")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, id);
}

/// One HTTP/1.1 client connection that sends one request and closes.
async fn http1_request(edge: &TestEdge) -> Vec<u8> {
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    answer
}

/// Bodiless streams one after another, on one HTTP/2 connection and on new ones, with
/// HTTP/1.1 clients between them, are all carried by one connection to the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_streams_share_one_machine_connection() {
    assert_eq!(machine_connections_for_sequential_streams(0).await, 1);
}

/// With two edge workers, each reuses the machine connection it parked: the machine
/// accepts at most one per worker, however many streams and clients come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_reuses_its_machine_connection_for_streams() {
    let accepted = machine_connections_for_sequential_streams(2).await;
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} machine connections"
    );
}

/// The connections the machine accepted while, on an edge with `workers`, 10 streams
/// went one after another on one HTTP/2 connection, then 3 times a stream on a new
/// one, an HTTP/1.1 client, and a stream on the first.
async fn machine_connections_for_sequential_streams(workers: usize) -> usize {
    let (edge, fake, id) = edge_with_fake_machine(|c| c.edge.workers = workers).await;
    let mut sender = h2c(&edge).await;
    for _ in 0..10 {
        assert_fake_answer(&mut sender, &id).await;
    }
    for _ in 0..3 {
        assert_fake_answer(&mut h2c(&edge).await, &id).await;
        let reply = http1_request(&edge).await;
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
        assert_fake_answer(&mut sender, &id).await;
    }
    let accepted = fake.accepted_connections(&id);
    edge.shutdown().await;
    accepted
}

/// Forty bodiless streams at once, answered at once, open at most
/// `max_machine_connections` connections to the machine; streams after the burst
/// reuse those connections, opening none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_streams_stays_within_the_bound_and_is_reused() {
    let (edge, fake, id) = edge_with_fake_machine(|c| {
        c.edge.max_machine_connections = 4;
        c.edge.queue_timeout = Duration::from_secs(10);
    })
    .await;
    let mut sender = h2c(&edge).await;
    for _ in 0..2 {
        let burst: Vec<_> = (0..40)
            .map(|_| {
                let (mut sender, id) = (sender.clone(), id.clone());
                tokio::spawn(async move { assert_fake_answer(&mut sender, &id).await })
            })
            .collect();
        for stream in burst {
            stream.await.unwrap();
        }
        assert!(
            fake.most_connections(&id) <= 4,
            "{}",
            fake.most_connections(&id)
        );
    }
    let accepted = fake.accepted_connections(&id);
    for _ in 0..10 {
        assert_fake_answer(&mut sender, &id).await;
    }
    assert_eq!(fake.accepted_connections(&id), accepted);
    edge.shutdown().await;
}

/// An edge whose machines idle-stop 1 s after their last request, and a started
/// machine of the runtime in it.
async fn edge_with_machine_that_idles_out() -> (TestEdge, String) {
    let edge = TestEdge::start_with(|c| {
        c.edge.idle_timeout = Duration::from_secs(1);
        c.edge.reap_interval = Duration::from_millis(200);
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    (edge, id)
}

/// How many requests the edge counts in flight on the machine.
fn in_flight(edge: &TestEdge, id: &str) -> usize {
    let machine = edge.running.supervisor.registry.machine(APP, id).unwrap();
    machine.activity.in_flight()
}

/// Waits until the edge counts no request in flight on the machine, then until it
/// idle-stops: within 10 s, long before the reset request would have ended.
async fn assert_let_go_and_idle_stopped(edge: &TestEdge, id: &str) {
    wait::until_true("the reset stream to leave the machine", BOOT, async || {
        in_flight(edge, id) == 0
    })
    .await;
    edge.wait_for_state(APP, id, "stopped", BOOT).await;
}

/// A stream the client resets while the machine is still sending a long event stream
/// is no longer counted in flight on the machine, which then idle-stops; the client's
/// connection serves on, and a bodiless POST on it wakes the machine again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_during_its_body_lets_its_machine_idle_stop() {
    let (edge, id) = edge_with_machine_that_idles_out().await;
    let mut sender = h2c(&edge).await;
    assert_own_answer(&mut sender, "/parks-a-connection").await;
    // 100 events, 200 ms apart: 20 s of answer, were it read to its end.
    let req = get(HOST, "/events?stream=100&interval=200");
    let res = sender.send_request(req).await.unwrap();
    let mut body = res.into_body();
    let first = tokio::time::timeout(ANSWERED, body.frame()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "data: 0\n\n");
    assert_eq!(in_flight(&edge, &id), 1);
    drop(body); // resets the stream; the connection stays open
    assert_let_go_and_idle_stopped(&edge, &id).await;
    // A POST without a body, which may not be sent twice: no connection parked to the
    // stopped run may be tried with it.
    let post = Request::post(format!("https://{HOST}/after-the-stop"))
        .header("host", HOST)
        .body(Empty::new())
        .unwrap();
    let res = answer(&mut sender, post).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.seen()["method"], "POST");
    edge.shutdown().await;
}

/// A stream the client resets while the machine has not answered yet (it takes a
/// minute) is no longer counted in flight on the machine, which then idle-stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_before_its_answer_lets_its_machine_idle_stop() {
    let (edge, id) = edge_with_machine_that_idles_out().await;
    let mut sender = h2c(&edge).await;
    let waiting = tokio::spawn(sender.send_request(get(HOST, "/?sleep=60000")));
    wait::until_true("the request to be in flight", BOOT, async || {
        in_flight(&edge, &id) == 1
    })
    .await;
    waiting.abort(); // drops the stream, which resets it; the connection stays open
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_let_go_and_idle_stopped(&edge, &id).await;
    edge.shutdown().await;
}

/// A machine answering a stream with `edgewake-keep-awake: 2s` outlives a 300 ms idle
/// timeout; the client never sees the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_awake_header_holds_off_the_idle_stop() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(300)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut sender = h2c(&edge).await;
    let asked = Instant::now();
    let res = answer(
        &mut sender,
        get(HOST, "/busy?header=edgewake-keep-awake:2s"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(!res.headers.contains_key("edgewake-keep-awake"));
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "stopped after {:?}",
        asked.elapsed()
    );
    assert_eq!(count_events(&stopped, "keep_awake"), 1, "{stopped}");
    edge.shutdown().await;
}

/// A machine that does not answer a stream within the machine read timeout gets it a
/// 504 with Retry-After, and one that goes quiet mid-answer has the stream cut, both
/// long before the machine would have gone on; neither leaves the machine counted busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_machine_does_not_hold_a_stream() {
    let edge =
        TestEdge::start_with(|c| c.edge.machine_read_timeout = Duration::from_millis(300)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut sender = h2c(&edge).await;
    let began = Instant::now();
    let res = answer(&mut sender, get(HOST, "/?sleep=10000")).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers["retry-after"], "1");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    let req = get(HOST, "/events?stream=2&interval=10000");
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: 0\n\n");
    let cut = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the quiet answer was cut long before its next event");
    assert!(matches!(cut, Some(Err(_))), "{cut:?}");
    wait::until_true("the streams to leave the machine", BOOT, async || {
        in_flight(&edge, &id) == 0
    })
    .await;
    assert_own_answer(&mut sender, "/after-silence").await;
    edge.shutdown().await;
}

/// A stream with a body (a 1 MB POST) reaches the machine whole, and bodiless streams
/// on the same connection before and after it get their own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_a_body_reaches_the_machine_whole() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let asked = [
        ("GET", "/before-upload", 0),
        ("POST", "/upload", MB),
        ("GET", "/after", 0),
    ];
    for (method, path, bytes) in asked {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{HOST}{path}"))
            .header("host", HOST)
            .body(Full::new(Bytes::from(vec![7u8; bytes])))
            .unwrap();
        let res = tokio::time::timeout(ANSWERED, sender.send_request(req))
            .await
            .expect("the answer's head arrived")
            .unwrap();
        let res = whole(res).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        let seen = res.seen();
        assert_eq!(seen["path"], path);
        assert_eq!(seen["method"], method, "{path}");
        assert_eq!(seen["body_bytes"], bytes, "{path}");
    }
    edge.shutdown().await;
}
