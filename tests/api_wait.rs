//! `wait` (a long poll that answers the moment a state is reached) and `events`.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// `wait?state=stopped` answers within a few ms of another call stopping the machine —
/// not before the (one second) stop has finished, and not at a later poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_when_another_call_stops_the_machine() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(SLOW_STOP_IMAGE).started().await;
    let version = machine["instance_id"].as_str().unwrap();
    let path = machine_path(
        APP,
        &id,
        &format!("/wait?state=stopped&instance_id={version}&timeout=30"),
    );
    let waiter = async {
        let answer = edge.get(&path).await;
        (answer, Instant::now())
    };
    // Sent together with the wait: the wait is in before the stop ends (the stop takes a
    // second), so it is answered by the stop, however the two calls are ordered.
    let stopper = async {
        let sent = Instant::now();
        let answer = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
        (answer, sent, Instant::now())
    };
    let (((status, body), waited_at), ((stop_status, _), stop_sent, stopped_at)) =
        tokio::join!(waiter, stopper);
    assert_eq!(
        (status, stop_status),
        (StatusCode::OK, StatusCode::OK),
        "{body}"
    );
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["state"], "stopped", "{body}");
    assert_eq!(body["version"], version, "{body}");
    let stopped = edge.machine(APP, &id).await;
    assert_eq!(body["event_id"], stopped["events"][0]["id"], "{stopped}");
    assert!(
        waited_at >= stop_sent + Duration::from_millis(900),
        "wait answered before the slow stop finished"
    );
    let lag = waited_at.saturating_duration_since(stopped_at);
    assert!(
        lag < Duration::from_millis(100),
        "wait answered {lag:?} after the stop"
    );
    edge.shutdown().await;
}

/// A state that never comes gives 408 with error JSON after the timeout (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_with_408() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let version = machine["instance_id"].as_str().unwrap();
    let begun = Instant::now();
    let (status, body) = edge
        .get(&machine_path(
            APP,
            &id,
            &format!("/wait?state=stopped&version={version}&timeout=1"),
        ))
        .await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(edge.machine(APP, &id).await["state"], "started");
    edge.shutdown().await;
}

/// Bad waits are 400 invalid_argument: timeout 0 or 61, `stopped` without a version, an
/// unknown state, a version the machine is not at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_waits_are_400() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    for query in [
        "state=started&timeout=0",
        "state=started&timeout=61",
        "state=stopped&timeout=5",
        "state=asleep",
        "state=settled&version=01AAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, body) = edge
            .get(&machine_path(APP, &id, &format!("/wait?{query}")))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["status"], "invalid_argument", "{query}: {body}");
    }
    let (status, body) = edge
        .get(&machine_path(APP, "00000000000000", "/wait"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// States may be repeated or comma-separated; a `created` machine is `settled`, and
/// `suspended` is met by `stopped` (edgewake suspends by stopping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_takes_state_lists() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    for query in [
        "state=started,settled&timeout=2",
        "state=destroyed&state=settled&timeout=2",
    ] {
        let (status, body) = edge
            .get(&machine_path(APP, &id, &format!("/wait?{query}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(body["state"], "created", "{body}");
        assert_eq!(body["event_id"], machine["events"][0]["id"], "{body}");
    }
    edge.post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    edge.get(&machine_path(APP, &id, "/wait?state=started&timeout=10"))
        .await;
    edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    let (status, body) = edge
        .get(&machine_path(APP, &id, "/wait?state=suspended&timeout=2"))
        .await;
    assert_eq!(
        (status, &body["state"]),
        (StatusCode::OK, &json!("stopped")),
        "{body}"
    );
    edge.shutdown().await;
}

/// With `from_event_id`, a state already reached does not count: the wait answers only
/// after a newer event (here a stop and start by other calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_from_event_id_needs_a_newer_event() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let last = machine["events"][0]["id"].as_str().unwrap().to_string();
    let path = machine_path(
        APP,
        &id,
        &format!("/wait?state=started&from_event_id={last}&timeout=1"),
    );
    let (status, body) = edge.get(&path).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT);

    // The stop and start go with the wait: whether it is in before them or comes after,
    // only their newer events can answer it.
    let path = path.replace("timeout=1", "timeout=20");
    let cycle = async {
        edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
        edge.post(&machine_path(APP, &id, "/start"), json!({}))
            .await;
    };
    let ((status, body), ()) = tokio::join!(edge.get(&path), cycle);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "started", "{body}");
    assert!(body["event_id"].as_str().unwrap() > last.as_str(), "{body}");
    edge.shutdown().await;
}

/// A wait for `destroyed` answers when another call destroys the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_destroyed() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    // The delete goes with the wait: a wait that comes after it is answered too.
    let wait = machine_path(APP, &id, "/wait?state=destroyed&timeout=20");
    let force = machine_path(APP, &id, "?force=true");
    let ((status, body), (deleted, _)) = tokio::join!(edge.get(&wait), edge.delete(&force));
    assert_eq!(
        (status, deleted),
        (StatusCode::OK, StatusCode::OK),
        "{body}"
    );
    assert_eq!(body["state"], "destroyed", "{body}");
    edge.shutdown().await;
}

/// Events come newest first, as many as `limit` asks (default 20); a bad limit is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_newest_first_with_limit() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    let machine = edge.machine(APP, &id).await;
    let all = machine["events"].as_array().unwrap();
    assert!(all.len() >= 4, "{machine}");

    let (status, events) = edge.get(&machine_path(APP, &id, "/events")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events.as_array().unwrap(), all);
    assert_eq!(events[0]["type"], "exit", "{events}");
    let (_, two) = edge.get(&machine_path(APP, &id, "/events?limit=2")).await;
    assert_eq!(two.as_array().unwrap(), &all[..2]);
    let (status, body) = edge
        .get(&machine_path(APP, &id, "/events?limit=lots"))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}
