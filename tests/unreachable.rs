//! A machine that is started but does not answer on its port: a request it never saw
//! goes to the next machine; one that can only go to it gets a 502.

mod support;

use edgewake::drivers::fake::FakeDriver;
use reqwest::StatusCode;
use std::sync::Arc;
use support::*;

/// Two started fake machines, the first of which (the one a request picks first) no
/// longer listens.
async fn edge_with_a_deaf_machine() -> (TestEdge, Arc<FakeDriver>, String, String) {
    let fake = Arc::new(FakeDriver::new());
    fake.serve_http();
    let edge = TestEdge::start_with_driver(fake.clone()).await;
    let deaf = edge.app_with_machine("fake").started().await.id;
    let live = edge.new_machine(APP, "fake").started().await.id;
    fake.stop_listening(&deaf);
    (edge, fake, deaf, live)
}

/// GETs and POSTs whose first machine refuses the connection are answered by the other
/// machine: the request had not been sent, so sending it on is safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_requests_go_to_the_next_machine() {
    let (edge, _fake, _deaf, live) = edge_with_a_deaf_machine().await;
    for _ in 0..5 {
        let res = edge.request(APP, "/").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), live);
    }
    let posted = edge
        .client
        .post(format!("http://{}/", edge.running.http_addr))
        .header("host", format!("{APP}.localhost"))
        .body("a body the machine never saw")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(posted.text().await.unwrap(), live);
    edge.shutdown().await;
}

/// A request that may only go to the deaf machine gets 502 with its request id (the
/// machine and the error are for the log, not the client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_to_an_unreachable_machine_is_a_bad_gateway() {
    let (edge, _fake, deaf, _live) = edge_with_a_deaf_machine().await;
    let res = edge
        .request_to(APP, "/")
        .header("fly-force-instance-id", &deaf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let request_id = res.headers()["fly-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = res.text().await.unwrap();
    assert!(body.contains("could not be reached"), "{body}");
    assert!(
        body.contains(&request_id) && !body.contains(&deaf),
        "{body}"
    );
    edge.shutdown().await;
}
