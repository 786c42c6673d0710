//! Shutdown: stop accepting, let in-flight requests finish, stop the machines.

mod support;

use reqwest::StatusCode;
use std::time::{Duration, Instant};
use support::*;

/// A request in flight when shutdown begins still gets its whole answer; afterwards
/// the edge accepts nothing and the machine's process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_then_stops_machines() {
    drains_then_stops_machines(0, RUNTIME_IMAGE, Duration::ZERO).await;
}

/// The same with two edge workers: the machine woken by a request served on a worker
/// is stopped by shutdown all the same, after the worker's request has its answer, and
/// shutdown waits for its process to exit (it takes a second) though the workers have
/// ended by then: the machine's process is watched from the main runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_workers_drains_then_stops_machines() {
    drains_then_stops_machines(2, SLOW_STOP_IMAGE, Duration::from_secs(1)).await;
}

/// Shutdown with a request in flight on a machine of `image`, which takes `stopping`
/// to exit after its stop signal.
async fn drains_then_stops_machines(workers: usize, image: &str, stopping: Duration) {
    let edge = TestEdge::start_with(|c| c.edge.workers = workers).await;
    let id = edge.app_with_machine(image).created().await.id;
    assert_eq!(edge.request(APP, "/warm").await.status(), StatusCode::OK);

    // An event stream: in flight from its first event until its last, 700 ms later.
    let mut streaming = edge.request(APP, "/slow?stream=2&interval=700").await;
    assert_eq!(streaming.status(), StatusCode::OK);
    let first = streaming.chunk().await.unwrap().expect("the first event");
    let addr = edge.running.http_addr;
    let began = Instant::now();
    edge.running.shutdown();

    let mut body = first.to_vec();
    while let Some(chunk) = streaming.chunk().await.expect("the answer is not cut") {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body, b"data: 0\n\ndata: 1\n\n");
    edge.running.stopped().await;
    assert!(
        machine_pids(&id).is_empty(),
        "machines are stopped at shutdown"
    );
    assert!(
        began.elapsed() >= stopping,
        "the machine had its stop, not cut short: {:?}",
        began.elapsed()
    );
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the edge no longer accepts connections");
}

/// A request still in flight when `edge.drain_timeout` runs out does not hold shutdown
/// up: edgewake waits that long, then stops the machine under it (the answer is cut)
/// and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown() {
    drain_timeout_bounds(0).await;
}

/// The same with two edge workers: the connection still open on a worker is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown_with_workers() {
    drain_timeout_bounds(2).await;
}

async fn drain_timeout_bounds(workers: usize) {
    const DRAIN: Duration = Duration::from_millis(500);
    let edge = TestEdge::start_with(|c| {
        c.edge.drain_timeout = DRAIN;
        c.edge.workers = workers;
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    // In flight from its first event until its last, a minute later.
    let mut streaming = edge.request(APP, "/?stream=2&interval=60000").await;
    assert_eq!(streaming.status(), StatusCode::OK);
    streaming.chunk().await.unwrap().expect("the first event");

    let began = Instant::now();
    edge.running.shutdown();
    tokio::time::timeout(BOOT, edge.running.stopped())
        .await
        .expect("shutdown finishes long before the request would");
    assert!(began.elapsed() >= DRAIN, "the request had its drain time");
    assert!(
        streaming.chunk().await.is_err(),
        "the answer was cut, not finished"
    );
    assert!(machine_pids(&id).is_empty());
}
