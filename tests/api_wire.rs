//! Wire details Fly's clients rely on: `fly-request-id`, `FlyV1` auth, `name` on app
//! create, durations and autostop as Fly answers them, stop's signal and timeout.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use support::*;

/// Every API answer — success, 401, 404, 405 — carries a distinct `fly-request-id`
/// ending in the edge's region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_a_fly_request_id() {
    let edge = TestEdge::start().await;
    let calls = [
        (
            reqwest::Method::GET,
            "/v1/apps",
            Some(TOKEN),
            StatusCode::OK,
        ),
        (
            reqwest::Method::GET,
            "/v1/apps",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            reqwest::Method::GET,
            "/v1/apps/nope",
            Some(TOKEN),
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::GET,
            "/elsewhere",
            Some(TOKEN),
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::PUT,
            "/v1/apps",
            Some(TOKEN),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    let mut ids = HashSet::new();
    for (method, path, token, expected) in calls {
        let mut req = edge.client.request(method, edge.api_url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), expected, "{path}");
        let id = res.headers()["fly-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.len() == 26 + 4 && id.ends_with("-ams"), "{id}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 5, "request ids repeat: {ids:?}");
    edge.shutdown().await;
}

/// `Authorization: FlyV1 <token>` (how fly-go sends macaroons) is accepted, and either
/// scheme in any case (RFC 9110); a wrong token under that scheme is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flyv1_scheme_is_accepted() {
    let edge = TestEdge::start().await;
    for (header, expected) in [
        (format!("FlyV1 {TOKEN}"), StatusCode::OK),
        (format!("bearer {TOKEN}"), StatusCode::OK),
        (format!("BEARER {TOKEN}"), StatusCode::OK),
        (format!("flyv1 {TOKEN}"), StatusCode::OK),
        (
            "FlyV1 fm2_not-the-token".to_string(),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let res = edge
            .client
            .get(edge.api_url("/v1/apps"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
    }
    edge.shutdown().await;
}

/// fly-go creates apps with `name` (not `app_name`); the app is then found by that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_create_accepts_name() {
    let edge = TestEdge::start().await;
    let (status, body) = edge
        .post(
            "/v1/apps",
            json!({"name": "by-name", "org_slug": "personal"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "by-name");
    let (status, app) = edge.get("/v1/apps/by-name").await;
    assert_eq!((status, &app["name"]), (StatusCode::OK, &json!("by-name")));
    let (status, body) = edge.post("/v1/apps", json!({"org_slug": "personal"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// Config durations in nanoseconds come back as Go strings, autostop as Fly answers
/// it (booleans for off/stop, "suspend" kept), unknown fields untouched; a duration
/// that does not parse is a 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_answers_as_fly_does() {
    let edge = TestEdge::start().await;
    let machine = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|config| {
            config["stop_config"] = json!({"timeout": 15_000_000_000u64, "signal": "SIGINT"});
            config["services"][0]["autostop"] = json!("stop");
            config["services"][0]["checks"] =
                json!([{"type": "tcp", "interval": "15s", "timeout": 2_000_000_000u64}]);
            config["x_future_field"] = json!({"nested": [1, 2]});
        })
        .created()
        .await;
    let got = edge.machine(APP, &machine.id).await["config"].clone();
    assert_eq!(
        got["stop_config"],
        json!({"timeout": "15s", "signal": "SIGINT"})
    );
    assert_eq!(got["services"][0]["autostop"], true);
    assert_eq!(got["services"][0]["checks"][0]["timeout"], "2s");
    assert_eq!(got["services"][0]["checks"][0]["interval"], "15s");
    assert_eq!(got["x_future_field"], json!({"nested": [1, 2]}));

    for (field, value) in [("autostop", json!("suspend")), ("autostop", json!(false))] {
        let machine = edge
            .new_machine(APP, RUNTIME_IMAGE)
            .config(|c| c["services"][0][field] = value.clone())
            .created()
            .await;
        assert_eq!(machine.json["config"]["services"][0][field], value);
    }
    let mut config = seed_config(RUNTIME_IMAGE);
    config["stop_config"] = json!({"timeout": "a while"});
    let body = json!({"config": config});
    let (status, body) = edge.post(&machines_path(APP), body).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("stop_config.timeout"),
        "{body}"
    );
    edge.shutdown().await;
}

/// The machine's `stop_config.signal` is used by a stop, and a stop body's `signal`
/// (a name or a number) overrides it: the exit events record the signal that ended it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_uses_stop_config_and_body_signal() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["stop_config"] = json!({"signal": "SIGKILL", "timeout": "5s"}))
        .started()
        .await
        .id;
    let exit_signal =
        |m: &serde_json::Value| m["events"][0]["request"]["exit_event"]["signal"].clone();

    edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(
        exit_signal(&edge.machine(APP, &id).await),
        9,
        "stop_config.signal"
    );

    for signal in [json!("SIGTERM"), json!(15)] {
        edge.post(&machine_path(APP, &id, "/start"), json!({}))
            .await;
        edge.wait_for_state(APP, &id, "started", BOOT).await;
        let (status, body) = edge
            .post(
                &machine_path(APP, &id, "/stop"),
                json!({"signal": signal, "timeout": "2s"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let stopped = edge.machine(APP, &id).await;
        // The runtime exits 0 on SIGTERM, so no signal ended it.
        assert_eq!(exit_signal(&stopped), -1, "{stopped}");
        assert_eq!(
            stopped["events"][0]["request"]["exit_event"]["exit_code"],
            0
        );
    }
    let (status, body) = edge
        .post(
            &machine_path(APP, &id, "/stop"),
            json!({"signal": "SIGNOPE"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// No one can make a stop wait longer than Fly's 300 s: a longer `stop_config.timeout`,
/// stop body `timeout` or restart `?timeout=` is a 400 naming it, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeouts_are_capped() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut config = seed_config(RUNTIME_IMAGE);
    config["stop_config"] = json!({"timeout": "10000h"});
    let body = json!({"config": config, "skip_launch": true});
    let (status, answer) = edge.post(&machines_path(APP), body).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("stop_config.timeout")
    );
    let stop = json!({"timeout": "10000h"});
    let (status, answer) = edge.post(&machine_path(APP, &id, "/stop"), stop).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    for query in ["?timeout=301", "?timeout=10000h"] {
        let path = machine_path(APP, &id, &format!("/restart{query}"));
        let (status, answer) = edge.post(&path, json!({})).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    assert_eq!(edge.machine(APP, &id).await["state"], "started");
    let limit = json!({"timeout": "5m"});
    let (status, answer) = edge.post(&machine_path(APP, &id, "/stop"), limit).await;
    assert_eq!(status, StatusCode::OK, "the limit itself is fine: {answer}");
    edge.shutdown().await;
}

/// Fly endpoints edgewake does not have (volumes, secrets, ps...) answer 501 with
/// Fly's error JSON naming the feature; an unknown path is a plain 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_fly_endpoints_say_so() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    for (path, what) in [
        (format!("/v1/apps/{APP}/volumes"), "volumes"),
        (format!("/v1/apps/{APP}/secrets"), "secrets"),
        (
            format!("/v1/apps/{APP}/machines/00000000000000/ps"),
            "process listings",
        ),
    ] {
        let (status, body) = edge.get(&path).await;
        assert_error(status, &body, StatusCode::NOT_IMPLEMENTED);
        assert!(body["error"].as_str().unwrap().contains(what), "{body}");
    }
    for path in ["/v1/nothing/here", "/v1/apps/volumes/nothing"] {
        let (status, body) = edge.get(path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    edge.shutdown().await;
}

/// Without a token, a /v1 path no route takes is 401 like any other: whoever asks
/// learns nothing of what the API has (no 404 or 501 before the token is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_check_the_token_first() {
    let edge = TestEdge::start().await;
    for path in [
        "/v1/nothing/here",
        "/v1/apps/x/volumes",
        "/v1/apps/x/machines/0/ps",
    ] {
        let res = edge.client.get(edge.api_url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // The document stays open: tests/api_openapi.rs fetches it without a token.
    edge.shutdown().await;
}
