//! Updating a machine: a full new config, a new version, the running process replaced.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

fn config_with_env(env: Value) -> Value {
    let mut config = seed_config(RUNTIME_IMAGE);
    config["env"] = env;
    config
}

/// What the runtime reports about itself through the edge.
async fn runtime_answer(edge: &TestEdge) -> Value {
    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// An update of a running machine gives a new instance_id, and the machine runs again
/// on the new config: a new process, which reports the new env.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_restarts_running_machine_on_new_config() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let old_version = machine["instance_id"].as_str().unwrap().to_string();
    assert_eq!(
        runtime_answer(&edge).await["env"],
        json!({"APP_ENV": "production"})
    );
    let old_pids = machine_pids(&id);

    let config = config_with_env(json!({"APP_ENV": "staging", "APP_COLOR": "blue"}));
    let body = json!({"config": config, "current_version": old_version});
    let (status, updated) = edge.post(&machine_path(APP, &id, ""), body).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let version = updated["instance_id"].as_str().unwrap();
    assert_ne!(version, old_version);
    assert_eq!(version.len(), 26);
    assert_eq!(updated["config"]["env"]["APP_COLOR"], "blue");
    let wait = format!("/wait?state=started&instance_id={version}&timeout=10");
    let (status, body) = edge.get(&machine_path(APP, &id, &wait)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let answer = runtime_answer(&edge).await;
    assert_eq!(
        answer["env"],
        json!({"APP_ENV": "staging", "APP_COLOR": "blue"}),
        "{answer}"
    );
    let new_pids = machine_pids(&id);
    assert!(
        !new_pids.is_empty() && new_pids != old_pids,
        "{old_pids:?} -> {new_pids:?}"
    );
    let machine = edge.machine(APP, &id).await;
    let kinds = event_types(&machine);
    assert_eq!(
        &kinds[..4],
        ["start", "update", "exit", "update"],
        "{kinds:?}"
    );
    edge.shutdown().await;
}

/// With skip_launch the updated machine is left stopped; the next request wakes it on
/// the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_skip_launch_leaves_it_stopped() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let body = json!({"config": config_with_env(json!({"APP_ENV": "next"})), "skip_launch": true});
    let (status, updated) = edge.post(&machine_path(APP, &id, ""), body).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["state"], "stopped");
    assert!(machine_pids(&id).is_empty());
    assert_eq!(
        runtime_answer(&edge).await["env"],
        json!({"APP_ENV": "next"})
    );
    edge.shutdown().await;
}

/// A machine created with skip_launch is started by an update without it (as Fly's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_starts_a_machine_that_is_not_running() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let body = json!({"config": config_with_env(json!({"APP_ENV": "now"}))});
    let (status, _) = edge.post(&machine_path(APP, &id, ""), body).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    edge.shutdown().await;
}

/// A stale current_version is 412, a changed region or name 400, a missing config 400,
/// an unknown image 400 — and none of them changes the machine; an empty
/// current_version is no guard at all (as Fly takes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_guards() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let (name, region) = (machine["name"].clone(), machine["region"].clone());
    let config = config_with_env(json!({"APP_ENV": "changed"}));
    let stale = "01AAAAAAAAAAAAAAAAAAAAAAAA";
    let cases = [
        (
            json!({"config": config, "current_version": stale}),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            json!({"config": config, "region": "zzz"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"config": config, "name": "another-name"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": name}), StatusCode::BAD_REQUEST),
        (
            json!({"config": seed_config("nobody/unknown")}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = edge.post(&machine_path(APP, &id, ""), body.clone()).await;
        assert_error(status, &answer, expected);
    }
    let after = edge.machine(APP, &id).await;
    assert_eq!(
        (&after["instance_id"], &after["config"]),
        (&machine["instance_id"], &machine["config"])
    );

    let same = json!({"config": config, "name": name, "region": region, "skip_launch": true});
    let (status, body) = edge.post(&machine_path(APP, &id, ""), same).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unguarded = json!({"config": config, "current_version": "", "skip_launch": true});
    let (status, body) = edge.post(&machine_path(APP, &id, ""), unguarded).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an empty current_version is none: {body}"
    );
    let (status, body) = edge
        .post(
            &machine_path(APP, "00000000000000", ""),
            json!({"config": config}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    edge.shutdown().await;
}
