//! Health checks gate routing: a machine failing its checks gets no new requests while a
//! healthy neighbour serves them, and gets them back once it passes; a woken machine
//! gets its first request only once its checks pass; the machine JSON shows the checks
//! as Fly does.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use support::*;

/// A service check on the runtime's `/health`, run every 100 ms.
fn with_http_check(config: &mut Value) {
    config["services"][0]["checks"] = json!([{
        "type": "http", "path": "/health", "interval": "100ms",
        "timeout": "1s", "grace_period": "100ms"
    }]);
}

/// The status of the machine's first check as the API shows it.
async fn check_status(edge: &TestEdge, id: &str) -> Value {
    edge.machine(APP, id).await["checks"][0].clone()
}

async fn wait_for_check(edge: &TestEdge, id: &str, status: &str) -> Value {
    let what = format!("machine {id}'s check to be {status}");
    wait::until(&what, BOOT, async || {
        let check = check_status(edge, id).await;
        if check["status"] == status {
            Ok(check)
        } else {
            Err(check)
        }
    })
    .await
}

/// Machines that served `n` requests in a row through the edge.
async fn served_by(edge: &TestEdge, n: usize) -> HashSet<String> {
    let mut machines = HashSet::new();
    for i in 0..n {
        let res = edge.request(APP, &format!("/r{i}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        machines.insert(
            res.headers()["edgewake-machine"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    machines
}

/// Switches a machine's `/health` straight on its own port (not through the edge).
async fn set_health(edge: &TestEdge, id: &str, path: &str, healthy: bool) {
    let ip = edge.machine(APP, id).await["private_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let res = edge
        .client
        .get(format!("http://{ip}:8080{path}"))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["healthy"], healthy, "{path}");
}

/// A machine whose HTTP check fails gets no request while its healthy neighbour takes
/// them all, and gets requests again once its check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_check_takes_a_machine_out_of_routing() {
    let edge = TestEdge::start().await;
    let first = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(with_http_check)
        .started()
        .await
        .id;
    let second = edge
        .new_machine(APP, RUNTIME_IMAGE)
        .config(with_http_check)
        .started()
        .await
        .id;
    wait_for_check(&edge, &first, "passing").await;
    wait_for_check(&edge, &second, "passing").await;
    // Sequential requests go to the first of equally idle machines.
    assert_eq!(served_by(&edge, 3).await, HashSet::from([first.clone()]));

    set_health(&edge, &first, "/health/fail", false).await;
    let failing = wait_for_check(&edge, &first, "critical").await;
    assert_eq!(
        failing["output"], "HTTP 503 Service Unavailable",
        "{failing}"
    );
    assert_eq!(served_by(&edge, 10).await, HashSet::from([second.clone()]));

    set_health(&edge, &first, "/health/pass", true).await;
    wait_for_check(&edge, &first, "passing").await;
    assert!(
        served_by(&edge, 3).await.contains(&first),
        "back in routing"
    );
    edge.shutdown().await;
}

/// A stopped machine whose check passes only 300 ms after it starts is woken by a
/// request that it answers only after that: listening is not enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woken_machine_serves_once_its_check_passes() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| {
            with_http_check(c);
            c["env"]["HEALTHY_AFTER_MS"] = json!("300");
        })
        .created()
        .await
        .id;
    let res = edge.request(APP, "/first").await;
    assert_eq!(res.status(), StatusCode::OK);
    let waited: u64 = res.headers()["edgewake-wake"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["machine_id"], id.as_str());
    let uptime = body["uptime_ms"].as_u64().unwrap();
    assert!(
        uptime >= 300,
        "the machine got the request {uptime} ms after start"
    );
    assert!(waited >= 300, "the request waited {waited} ms");
    edge.shutdown().await;
}

/// The machine JSON lists its checks as Fly does: name, status, output, updated_at;
/// a stopped machine runs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_json_shows_checks() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| {
            with_http_check(c);
            c["checks"] = json!({"alive": {"type": "tcp", "port": 8080, "interval": "1s"}});
        })
        .started()
        .await
        .id;
    let check = wait_for_check(&edge, &id, "passing").await;
    assert_eq!(check["name"], "alive");
    let machine = edge.machine(APP, &id).await;
    let service = &machine["checks"][1];
    assert_eq!(service["name"], "servicecheck-00-http-8080");
    assert!(
        service["updated_at"].as_str().unwrap().ends_with('Z'),
        "{service}"
    );
    assert_eq!(
        machine["config"]["services"][0]["checks"][0]["interval"],
        "100ms"
    );

    let (status, _) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let stopped = edge.machine(APP, &id).await;
    assert!(stopped.get("checks").is_none(), "{stopped}");
    edge.shutdown().await;
}

/// A check the edge cannot run as written is refused at create, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_check_is_refused() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let mut config = seed_config(RUNTIME_IMAGE);
    config["services"][0]["checks"] = json!([{"type": "http", "interval": "1ms"}]);
    let (status, body) = edge
        .post(&machines_path(APP), json!({"config": config}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("config.services[0].checks[0].interval"),
        "{body}"
    );
    edge.shutdown().await;
}
