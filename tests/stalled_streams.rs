//! HTTP/2 answers the client does not take: a client that grants no flow-control window
//! holds its streams' machine connections, pool slots and in-flight counts only until
//! the send timeout, then the streams are cut and the machine serves others; a client
//! that reads slowly but steadily is not cut; on the API port such a client does not
//! keep a connection busy for ever either.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::tls::{get, h2c};
use support::*;
use tokio::net::TcpStream;

const HOST: &str = "user-functions.localhost";
/// The edge's send timeout in these tests: how long an answer may wait for its client.
const STALL: Duration = Duration::from_secs(1);
/// How long one answer may take before the test calls it hung.
const ANSWERED: Duration = Duration::from_secs(10);
const KB: usize = 1024;

/// An edge whose clients must take an answer within `STALL`, with a started machine of
/// the runtime that HTTP/2 clients reach over at most two connections.
async fn edge_with_machine() -> (TestEdge, String) {
    let edge = TestEdge::start_with(|c| {
        c.edge.client_send_timeout = STALL;
        c.edge.max_machine_connections = 2;
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    (edge, id)
}

/// An h2c connection to `addr` whose streams start with a flow-control window of `window` bytes.
async fn h2c_with_window(addr: SocketAddr, window: u32) -> http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// How many requests the edge counts in flight on the machine.
fn in_flight(edge: &TestEdge, id: &str) -> usize {
    let machine = edge.running.supervisor.registry.machine(APP, id).unwrap();
    machine.activity.in_flight()
}

/// Two streams of a client that grants no window (initial window 0, no WINDOW_UPDATE)
/// take both of the machine's connections; after the send timeout they are cut, so
/// the machine counts nothing in flight while that client keeps its connection, and
/// another HTTP/2 client of the app is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_client_does_not_take_give_their_machine_back() {
    let (edge, id) = edge_with_machine().await;
    let stalling = h2c_with_window(edge.running.http_addr, 0).await;
    let mut heads = Vec::new();
    for _ in 0..2 {
        let req = get(HOST, &format!("/?bytes={}", 1024 * KB));
        let head = tokio::time::timeout(ANSWERED, stalling.clone().send_request(req))
            .await
            .expect("the answer's head arrived")
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        heads.push(head); // held, not read: the stream stays open, its window shut
    }
    assert_eq!(in_flight(&edge, &id), 2);

    let began = Instant::now();
    let mut other = h2c(&edge).await;
    let res = tokio::time::timeout(ANSWERED, other.send_request(get(HOST, "/other")))
        .await
        .expect("the other client was answered")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{"), "{body:?}");
    assert!(began.elapsed() >= STALL / 2, "{:?}", began.elapsed());
    wait::until_true(
        "the stalled streams to leave the machine",
        ANSWERED,
        async || in_flight(&edge, &id) == 0,
    )
    .await;
    assert!(
        !stalling.is_closed(),
        "the stalling client kept its connection"
    );
    drop(heads);
    edge.shutdown().await;
}

/// A client that reads a 256 KB answer through a 16 KB window, pausing after each
/// frame, takes several send timeouts in all but is never cut: it gets it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_is_not_cut() {
    let (edge, id) = edge_with_machine().await;
    let mut reader = h2c_with_window(edge.running.http_addr, 16 * KB as u32).await;
    let began = Instant::now();
    let req = get(HOST, &format!("/?bytes={}", 256 * KB));
    let res = reader.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the answer was not cut");
        read += frame.data_ref().map_or(0, Bytes::len);
        // The client's own pace: well within the send timeout each time.
        tokio::time::sleep(STALL / 8).await;
    }
    assert_eq!(read, 256 * KB);
    assert!(began.elapsed() > 2 * STALL, "{:?}", began.elapsed());
    wait::until_true("the answer to leave the machine", ANSWERED, async || {
        in_flight(&edge, &id) == 0
    })
    .await;
    edge.shutdown().await;
}

/// The API port cuts an HTTP/2 answer its client does not take, too: a client that
/// grants no window does not keep the API's only connection busy for ever. Once its
/// answer is cut, the connection goes idle and closes, and another client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_cuts_answers_the_client_does_not_take() {
    let edge = TestEdge::start_with(|c| {
        c.edge.client_send_timeout = STALL;
        c.api.idle_timeout = STALL;
        c.api.max_connections = 1;
    })
    .await;
    let stalling = h2c_with_window(edge.running.api_addr, 0).await;
    let req = http::Request::get("http://api/v1/apps")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let head = tokio::time::timeout(ANSWERED, stalling.clone().send_request(req))
        .await
        .expect("the answer's head arrived")
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    let other = reqwest::Client::new()
        .get(edge.api_url("/v1/apps"))
        .bearer_auth(TOKEN)
        .send();
    let res = tokio::time::timeout(ANSWERED, other)
        .await
        .expect("another client was served once the stalled answer was cut")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(head);
    edge.shutdown().await;
}
