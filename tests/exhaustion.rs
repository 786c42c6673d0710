//! What a flood of clients can make edgewake hold is bounded: connections to one machine
//! (HTTP/2 streams share a pool, the rest queue), connections to all machines, the
//! Machines API's connections (a cap, header and idle timeouts), and file descriptors
//! (the limit raised at start, the edge's share kept below it, so the API answers
//! through a flood).

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use reqwest::StatusCode;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "user-functions.localhost";
const SHORT: Duration = Duration::from_millis(300);

/// Polls `check` until it holds, for at most 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `count` GETs on `sender` at once; their statuses, in order, once all are done.
fn streams(
    sender: &http2::SendRequest<Empty<Bytes>>,
    count: usize,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let requests: Vec<_> = (0..count)
        .map(|_| {
            let mut sender = sender.clone();
            async move {
                let res = sender.send_request(support::tls::get(HOST, "/")).await?;
                let status = res.status().as_u16();
                res.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            }
        })
        .collect();
    tokio::spawn(async move {
        let done = futures_util::future::join_all(requests).await;
        done.into_iter().map(|r| r.map_or(0, |s| s)).collect()
    })
}

/// Forty HTTP/2 streams to one machine share at most `max_machine_connections`
/// connections to it; the others wait their turn, and every stream is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_share_a_bounded_pool_per_machine() {
    let (edge, fake, id) = edge_with_fake_machine(|c| {
        c.edge.max_machine_connections = 4;
        c.edge.queue_timeout = Duration::from_secs(10);
    })
    .await;
    fake.hold_answers();
    let (first, second) = (
        support::tls::h2c(&edge).await,
        support::tls::h2c(&edge).await,
    );
    let answers = [streams(&first, 20), streams(&second, 20)];
    eventually("4 connections open", || fake.open_connections(&id) >= 4).await;
    // Room for a connection beyond the cap to show itself before the answers flow.
    tokio::time::sleep(SHORT).await;
    fake.release_answers();
    for answers in answers {
        assert_eq!(answers.await.unwrap(), vec![200; 20]);
    }
    assert_eq!(fake.most_connections(&id), 4);
    edge.shutdown().await;
}

/// A stream that finds every pooled connection busy for the queue timeout gets 503
/// with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_waits_too_long_is_told_to_retry() {
    let (edge, fake, id) = edge_with_fake_machine(|c| {
        c.edge.max_machine_connections = 1;
        c.edge.queue_timeout = SHORT;
    })
    .await;
    fake.hold_answers();
    let client = support::tls::h2c(&edge).await;
    let held = streams(&client, 1);
    eventually("the first stream reached the machine", || {
        fake.open_connections(&id) == 1
    })
    .await;
    let second = client.clone().send_request(support::tls::get(HOST, "/"));
    let res = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second stream was answered")
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    fake.release_answers();
    assert_eq!(held.await.unwrap(), vec![200]);
    edge.shutdown().await;
}

/// Connections to machines never outnumber `max_upstream_connections`: a request
/// beyond it is refused at once with 503 (it reached no machine), and served once the
/// others are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_machines_stay_within_the_budget() {
    let (edge, fake, id) = edge_with_fake_machine(|c| c.edge.max_upstream_connections = 2).await;
    fake.hold_answers();
    let url = format!("http://{}/", edge.running.http_addr);
    let clients: Vec<_> = (0..2)
        .map(|_| reqwest::Client::new().get(&url).header("host", HOST).send())
        .collect();
    let held = tokio::spawn(futures_util::future::join_all(clients));
    eventually("2 connections open", || fake.open_connections(&id) == 2).await;
    let res = reqwest::Client::new()
        .get(format!("http://{}/", edge.running.http_addr))
        .header("host", HOST)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the third request was answered");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    fake.release_answers();
    for res in held.await.unwrap() {
        assert_eq!(res.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(fake.most_connections(&id), 2);
    edge.shutdown().await;
}

/// An API client that never finishes its headers, or goes quiet after a request, is
/// closed after the API's timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_closes_silent_and_idle_connections() {
    let edge = TestEdge::start_with(|c| {
        c.api.header_read_timeout = SHORT;
        c.api.idle_timeout = SHORT;
    })
    .await;
    let mut silent = TcpStream::connect(edge.running.api_addr).await.unwrap();
    silent
        .write_all(b"GET /v1/apps HTTP/1.1\r\nHost: api")
        .await
        .unwrap();
    wait::closed_within(&mut silent, Duration::from_secs(5)).await;

    let mut idle = TcpStream::connect(edge.running.api_addr).await.unwrap();
    let request =
        format!("GET /v1/apps HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    wait::closed_within(&mut idle, Duration::from_secs(5)).await;
    edge.shutdown().await;
}

/// The API serves at most `api.max_connections` connections at once: a further client
/// waits until one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_connections_are_capped() {
    let edge = TestEdge::start_with(|c| c.api.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(edge.running.api_addr).await.unwrap();
        let request =
            format!("GET /v1/apps HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        assert!(tcp.read(&mut answer).await.unwrap() > 0);
        held.push(tcp);
    }
    let third = tokio::spawn(
        reqwest::Client::new()
            .get(edge.api_url("/v1/apps"))
            .bearer_auth(TOKEN)
            .send(),
    );
    tokio::time::sleep(SHORT).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beside two"
    );
    drop(held.pop());
    let res = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    edge.shutdown().await;
}

/// Whether the API of `edge` answers `GET /v1/apps` within `within`.
async fn api_answers(edge: &EdgewakeProcess, within: Duration) -> bool {
    let client = reqwest::Client::builder().timeout(within).build().unwrap();
    let res = client
        .get(format!("http://{}/v1/apps", edge.api))
        .bearer_auth(TOKEN)
        .send()
        .await;
    res.is_ok_and(|r| r.status() == StatusCode::OK)
}

/// The soft and hard open-file limits of a process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

/// Started with a low soft limit on open files, edgewake runs with its hard limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let edge =
        EdgewakeProcess::spawn_limited(dir.path(), &random_loopback_range(), "ulimit -Sn 256")
            .await;
    let (soft, hard) = open_file_limits(edge.child.id());
    assert_eq!(soft, hard);
    assert_ne!(soft, "256");
}

/// Under a hard limit of 1,024 open files, 2,000 HTTP/2 streams to one slow machine do
/// not exhaust them: the Machines API still answers while the streams are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_leaves_the_api_its_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let edge =
        EdgewakeProcess::spawn_limited(dir.path(), &random_loopback_range(), "ulimit -n 1024")
            .await;
    let api = |path: &str| format!("http://{}{path}", edge.api);
    let client = reqwest::Client::new();
    let app = serde_json::json!({"app_name": APP, "org_slug": "personal"});
    client
        .post(api("/v1/apps"))
        .bearer_auth(TOKEN)
        .json(&app)
        .send()
        .await
        .unwrap();
    let machine = serde_json::json!({"config": seed_config(RUNTIME_IMAGE)});
    let res = client
        .post(api(&format!("/v1/apps/{APP}/machines")))
        .bearer_auth(TOKEN)
        .json(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut flood = Vec::new();
    for _ in 0..20 {
        let tcp = TcpStream::connect(edge.http).await.unwrap();
        let sender = support::tls::http2_over(tcp).await;
        for _ in 0..100 {
            let mut sender = sender.clone();
            flood.push(tokio::spawn(async move {
                let res = sender
                    .send_request(support::tls::get(HOST, "/?sleep=3000"))
                    .await;
                res.map(|r| r.status().as_u16())
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the flood is in flight
    assert!(
        api_answers(&edge, Duration::from_secs(2)).await,
        "the API did not answer during the flood"
    );
    for stream in &flood {
        stream.abort();
    }
}

/// A client connection that goes quiet lets its connection to the machine go (its
/// socket, buffers and budget slot), and makes a new one on its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_connection_lets_its_machine_connection_go() {
    let (edge, fake, id) = edge_with_fake_machine(|_| {}).await;
    let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut answer = vec![0u8; 4096];
    tcp.write_all(request.as_bytes()).await.unwrap();
    assert!(tcp.read(&mut answer).await.unwrap() > 0);
    assert_eq!(fake.open_connections(&id), 1);
    eventually("the machine connection closed", || {
        fake.open_connections(&id) == 0
    })
    .await;
    tcp.write_all(request.as_bytes()).await.unwrap();
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "the client connection still serves"
    );
    edge.shutdown().await;
}

/// Client connections that each send one request and close (a browser's new
/// connections, `Connection: close`) share one connection to the machine: the next
/// client takes the one the last left, instead of the machine accepting one per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_client_connections_reuse_the_machine_connection() {
    assert_eq!(machine_connections_for_new_clients(0, 5).await, 1);
}

/// With two edge workers, new client connections (handed to one worker, then the
/// other) reuse the machine connection their worker parked: the machine accepts at
/// most one per worker, however many clients come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_reuses_its_own_machine_connection() {
    let accepted = machine_connections_for_new_clients(2, 8).await;
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} machine connections"
    );
}

/// The connections a machine accepted while `clients` client connections to an edge
/// with `workers`, one after another, each sent one request and closed.
async fn machine_connections_for_new_clients(workers: usize, clients: usize) -> usize {
    let (edge, fake, id) = edge_with_fake_machine(|c| c.edge.workers = workers).await;
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    for _ in 0..clients {
        let mut tcp = TcpStream::connect(edge.running.http_addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    let accepted = fake.accepted_connections(&id);
    edge.shutdown().await;
    accepted
}
