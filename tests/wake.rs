//! The edge wakes stopped machines on request, shares one start among a herd, fails
//! fast when a machine dies while starting, and stops machines that go idle.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;

/// A request to a stopped machine starts it and returns the runtime's answer; the
/// machine's events show exactly one new `start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wakes_stopped_machine() {
    let edge = TestEdge::start().await;
    let machine = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let id = machine.id.as_str();
    assert_eq!(count_events(&machine.json, "start"), 0);

    let res = edge.request(APP, "/hello?x=1").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["edgewake-machine"], id);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["machine_id"], id);
    assert_eq!(body["app"], APP);
    assert_eq!(body["path"], "/hello?x=1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert_eq!(body["headers"]["fly-client-ip"], "127.0.0.1");
    assert_eq!(body["headers"]["host"], format!("{APP}.localhost"));

    let machine = edge.machine(APP, id).await;
    assert_eq!(machine["state"], "started");
    assert_eq!(count_events(&machine, "start"), 1);
    edge.shutdown().await;
}

/// 200 concurrent requests to one stopped machine all succeed, with exactly one start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_shares_one_start() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(SLOW_BOOT_IMAGE).created().await.id;

    let requests: Vec<_> = (0..200)
        .map(|i| spawn_request(edge.request_to(APP, &format!("/herd/{i}"))))
        .collect();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["edgewake-machine"], id.as_str());
    }
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "start"), 1, "{machine}");
    edge.shutdown().await;
}

/// A machine whose command exits at once fails the request with 502 long before the
/// wake timeout, and is left `stopped` with the exit code in its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_machine_fails_fast_with_502() {
    let wake_timeout = Duration::from_secs(30);
    let edge = TestEdge::start_with(|c| c.edge.wake_timeout = wake_timeout).await;
    let id = edge.app_with_machine(CRASH_IMAGE).created().await.id;

    let began = Instant::now();
    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(
        began.elapsed() < wake_timeout / 3,
        "took {:?}",
        began.elapsed()
    );
    let request_id = res.headers()["fly-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = res.text().await.unwrap();
    assert!(
        text.contains("failed to start") && text.contains(&request_id),
        "{text}"
    );

    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "stopped");
    assert_eq!(event_types(&machine)[..2], ["backoff", "exit"], "{machine}");
    let exit = &machine["events"][1];
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 3);
    edge.shutdown().await;
}

/// A machine that crashes at start is not spawned again by every request: while its
/// starts are held off, requests get 503 with a Retry-After at once, and its events
/// show one start and the back-off; an API start tries again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_is_held_off() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(CRASH_IMAGE).created().await.id;
    assert_eq!(
        edge.request(APP, "/").await.status(),
        StatusCode::BAD_GATEWAY
    );
    let requests: Vec<_> = (0..50)
        .map(|i| spawn_request(edge.request_to(APP, &format!("/loop/{i}"))))
        .collect();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        let retry_after: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "exit"), 1, "one spawn: {machine}");
    assert_eq!(event_types(&machine)[0], "backoff");

    let (status, _) = edge
        .post(&machine_path(APP, &id, "/start"), serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    wait::until_true("the API start's exit", BOOT, async || {
        count_events(&edge.machine(APP, &id).await, "exit") == 2
    })
    .await;
    edge.shutdown().await;
}

/// A machine with no request for the idle timeout is stopped, and the next request
/// wakes it again; destroyed through the API, its process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_machine_stops_and_wakes_again() {
    idle_stop_wake_and_destroy(0).await;
}

/// The same with two edge workers: a machine woken by a request served on a worker is
/// idle-stopped, woken again and destroyed without error (its process, its exit
/// watcher and its stops live on the main runtime, not the worker's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_machine_stops_and_wakes_again_with_workers() {
    idle_stop_wake_and_destroy(2).await;
}

async fn idle_stop_wake_and_destroy(workers: usize) {
    let edge = TestEdge::start_with(|c| {
        c.edge.idle_timeout = Duration::from_millis(300);
        c.edge.workers = workers;
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;

    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert_eq!(stopped["events"][1]["type"], "stop");
    assert_eq!(stopped["events"][1]["source"], "flyd");
    assert!(
        machine_pids(&id).is_empty(),
        "the machine's process is gone"
    );

    assert_eq!(edge.request(APP, "/again").await.status(), StatusCode::OK);
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "start"), 2);
    let (status, body) = edge.delete(&machine_path(APP, &id, "?force=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until_no_process(&id).await;
    edge.shutdown().await;
}

/// A machine whose service says `autostop = false` is never stopped for idleness, while
/// one beside it with autostop on is, twice, after the first was last used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostop_off_is_never_idle_stopped() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(300)).await;
    let kept = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["autostop"] = json!(false))
        .created()
        .await
        .id;
    let witness = edge.witness().await;
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    witness.idle_stopped_twice().await;
    let machine = edge.machine(APP, &kept).await;
    assert_eq!(machine["state"], "started", "{machine}");
    assert_eq!(count_events(&machine, "stop"), 0, "{machine}");
    edge.shutdown().await;
}

/// A request that arrives while the machine is being stopped waits for the stop and
/// wakes it again instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_during_stop_waits_and_wakes() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(SLOW_STOP_IMAGE).started().await.id;

    let stop_path = machine_path(APP, &id, "/stop");
    let stop = spawn_request(edge.api_request(reqwest::Method::POST, &stop_path));
    edge.wait_for_state(APP, &id, "stopping", BOOT).await;

    let res = edge.request(APP, "/during-stop").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(stop.await.unwrap().status, StatusCode::OK);
    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "started");
    let kinds = event_types(&machine);
    assert_eq!(
        &kinds[..3],
        ["start", "exit", "stop"],
        "newest first: {kinds:?}"
    );
    edge.shutdown().await;
}

/// Requests spread across many idle stops never fail: the reaper and arriving requests
/// never both win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_across_idle_stops() {
    let edge = TestEdge::start_with(|c| {
        c.edge.idle_timeout = Duration::from_millis(20);
        c.edge.reap_interval = Duration::from_millis(5);
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    for i in 0..60u64 {
        let res = edge.request(APP, &format!("/{i}")).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        // The behaviour under test: the next request comes 0 to 30 ms later, before,
        // during or after the idle stop (20 ms idle, reaped every 5 ms).
        tokio::time::sleep(Duration::from_millis(i % 4 * 10)).await;
    }
    let machine = edge.machine(APP, &id).await;
    assert!(
        count_events(&machine, "stop") >= 2,
        "the machine was stopped between requests: {machine}"
    );
    edge.shutdown().await;
}

/// A machine whose process exits by itself becomes `stopped`, and the next request
/// wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_that_exits_by_itself_is_woken() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;

    assert_eq!(edge.request(APP, "/exit").await.status(), StatusCode::OK);
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    let exit = &stopped["events"][0];
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 0);
    assert_eq!(exit["request"]["exit_event"]["requested_stop"], false);

    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    assert_eq!(count_events(&edge.machine(APP, &id).await, "start"), 2);
    edge.shutdown().await;
}

/// Unknown hosts get 404; an app without machines gets 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_failures_have_clear_statuses() {
    let edge = TestEdge::start().await;
    assert_eq!(
        edge.request("nobody", "/").await.status(),
        StatusCode::NOT_FOUND
    );
    edge.create_app("empty").await;
    let res = edge.request("empty", "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    edge.shutdown().await;
}

/// A machine that never listens fails the waiting request with 504 at the wake
/// timeout, and is not left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_that_never_listens_times_out_with_504() {
    let edge = TestEdge::start_with(|c| {
        c.edge.wake_timeout = Duration::from_millis(500);
        let sleeper = edgewake::config::ImageConfig {
            command: vec!["sleep".into(), "30".into()],
            env: Default::default(),
        };
        c.images.insert("test/sleeper".into(), sleeper);
    })
    .await;
    let id = edge.app_with_machine("test/sleeper").created().await.id;
    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(edge.machine(APP, &id).await["state"], "stopped");
    assert!(
        machine_pids(&id).is_empty(),
        "the machine's process was killed"
    );
    edge.shutdown().await;
}
