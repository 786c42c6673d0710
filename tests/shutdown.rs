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
    edge.create_app(APP).await;
    let machine = edge.create_machine(APP, RUNTIME_IMAGE, true).await;
    let id = machine["id"].as_str().unwrap().to_string();
    assert_eq!(edge.request(APP, "/warm").await.status(), StatusCode::OK);

    let (client, addr) = (edge.client.clone(), edge.running.http_addr);
    let slow = tokio::spawn(async move {
        let res = client
            .get(format!("http://{addr}/slow?sleep=700"))
            .header("host", format!("{APP}.localhost"))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // the request is now in flight
    edge.running.shutdown();

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/slow?sleep=700"), "{body}");
    edge.running.stopped().await;
    assert!(
        machine_pids(&id).is_empty(),
        "machines are stopped at shutdown"
    );
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the edge no longer accepts connections");
}
