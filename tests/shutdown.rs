//! Shutdown: stop accepting, let in-flight requests finish, stop the machines.

mod support;

use reqwest::StatusCode;
use std::time::Duration;
use support::*;

/// A request in flight when shutdown begins still gets its answer; afterwards the edge
/// accepts nothing and the machine's process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_then_stops_machines() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    assert_eq!(edge.request(APP, "/warm").await.status(), StatusCode::OK);

    let addr = edge.running.http_addr;
    let slow = spawn_request(edge.request_to(APP, "/slow?sleep=700"));
    tokio::time::sleep(Duration::from_millis(200)).await; // the request is now in flight
    edge.running.shutdown();

    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("/slow?sleep=700"), "{answer:?}");
    edge.running.stopped().await;
    assert!(
        machine_pids(&id).is_empty(),
        "machines are stopped at shutdown"
    );
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the edge no longer accepts connections");
}
