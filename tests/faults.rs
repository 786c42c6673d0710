//! Faults around lifecycle changes: clients that hang up, deletes racing creates,
//! machine processes that leave children behind or die under a request.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use support::*;

/// A stop whose client hangs up before it finishes still completes: the machine ends
/// `stopped` with its process gone, and shutdown is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_completes_when_the_client_hangs_up() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(SLOW_STOP_IMAGE).started().await.id;

    let stop = machine_path(APP, &id, "/stop");
    let hasty = edge
        .api_request(reqwest::Method::POST, &stop)
        .timeout(Duration::from_millis(200));
    assert!(
        hasty.send().await.is_err(),
        "the client gave up before the 1 s stop"
    );

    edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert!(machine_pids(&id).is_empty());
    tokio::time::timeout(Duration::from_secs(10), edge.shutdown())
        .await
        .expect("shutdown finishes");
}

/// While an app is being deleted, no machine can be created in it, and none of its
/// machines outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_machine_outlives_a_deleted_app() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(SLOW_STOP_IMAGE).started().await.id;

    let app = format!("/v1/apps/{APP}");
    let delete =
        spawn_request(edge.api_request(reqwest::Method::DELETE, &format!("{app}?force=true")));
    // The machine takes 1 s to stop; the app is gone from the start of the delete.
    wait::until_true("the app to be gone", BOOT, async || {
        edge.get(&app).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let body = json!({"config": seed_config(RUNTIME_IMAGE)});
    let (status, created) = edge.post(&machines_path(APP), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{created}");

    assert_eq!(delete.await.unwrap().status, StatusCode::ACCEPTED);
    assert!(
        machine_pids(&id).is_empty(),
        "the app's machine was stopped"
    );
    edge.shutdown().await;
}

/// A machine whose main process exits leaves no child behind: the next wake starts a
/// fresh run instead of finding the old child still listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_die_with_the_machine() {
    let edge = TestEdge::start_with(|c| {
        let wrapper = "{bin_dir}/edgewake-functions & sleep 0.5; exit 0";
        let image = edgewake::config::ImageConfig {
            command: vec!["sh".into(), "-c".into(), wrapper.into()],
            env: Default::default(),
        };
        c.images.insert("test/wrapper".into(), image);
    })
    .await;
    let id = edge.app_with_machine("test/wrapper").created().await.id;

    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert!(
        machine_pids(&id).is_empty(),
        "the wrapper's server died with it"
    );

    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    assert_eq!(count_events(&edge.machine(APP, &id).await, "start"), 2);
    edge.shutdown().await;
}

/// A machine that dies while a request is in flight on it fails that request with 502
/// (not a hang, not a wake of a fresh run behind the client's back), and ends stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_failing_mid_request_is_a_502() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let registry = &edge.running.supervisor.registry;
    let machine = registry.machine(APP, &id).expect("registered");
    let request = spawn_request(edge.request_to(APP, "/?sleep=60000"));
    wait::until_true("the request to be in flight", BOOT, async || {
        machine.activity.in_flight() == 1
    })
    .await;
    let kill = json!({"signal": "SIGKILL"});
    let (status, body) = edge.post(&machine_path(APP, &id, "/signal"), kill).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = tokio::time::timeout(BOOT, request)
        .await
        .expect("answered long before the machine would have")
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{answer:?}");
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert_eq!(
        count_events(&stopped, "start"),
        1,
        "not woken again: {stopped}"
    );
    edge.shutdown().await;
}
