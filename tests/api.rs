//! The Machines API as a Fly.io client sees it: apps, machines, their JSON, errors,
//! and the edge routing to a machine the API booted.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::IpAddr;
use support::*;

/// A request to the API with an optional bearer token and a raw body.
async fn raw(
    edge: &TestEdge,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = edge.client.request(method, edge.api_url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    answer(req).await
}

/// Asserts every event has status, source and a ms timestamp, newest first.
fn assert_events_well_formed(machine: &Value) {
    let events = machine["events"].as_array().unwrap();
    let mut previous = u64::MAX;
    for event in events {
        assert!(
            event["status"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        assert!(
            event["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        let timestamp = event["timestamp"]
            .as_u64()
            .unwrap_or_else(|| panic!("timestamp: {event}"));
        assert!(
            timestamp > 1_600_000_000_000,
            "timestamp not in ms since epoch: {event}"
        );
        assert!(timestamp <= previous, "events not newest first: {machine}");
        previous = timestamp;
    }
}

fn position(types: &[&str], kind: &str) -> usize {
    types
        .iter()
        .position(|t| *t == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {types:?}"))
}

async fn machine_ids(edge: &TestEdge, app: &str) -> Vec<String> {
    let (status, list) = edge.get(&machines_path(app)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap_or_else(|| panic!("machine list is not an array: {list}"))
        .iter()
        .map(id_of)
        .collect()
}

/// Creating an app, reading it back, listing it under its org only, and deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_lifecycle_create_get_list_by_org_delete() {
    let edge = TestEdge::start().await;
    edge.create_app("alpha").await;
    edge.create_app("beta").await;
    let (status, body) = edge
        .post(
            "/v1/apps",
            json!({"app_name": "gamma", "org_slug": "other-org"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, app) = edge.get("/v1/apps/alpha").await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(app["name"], "alpha");
    assert!(app["id"].as_str().is_some_and(|s| !s.is_empty()), "{app}");
    assert_eq!(app["organization"]["slug"], "personal");

    let machine = edge.new_machine("alpha", RUNTIME_IMAGE).created().await;
    assert_eq!(machine.json["state"], "created");

    let (status, list) = edge.get("/v1/apps?org_slug=personal").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_apps"], 2, "{list}");
    let apps = list["apps"].as_array().unwrap();
    let mut names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    let alpha = apps.iter().find(|a| a["name"] == "alpha").unwrap();
    assert_eq!(alpha["id"], app["id"]);
    assert_eq!(alpha["machine_count"], 1, "{list}");
    let beta = apps.iter().find(|a| a["name"] == "beta").unwrap();
    assert_eq!(beta["machine_count"], 0, "{list}");

    let (status, list) = edge.get("/v1/apps?org_slug=other-org").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_apps"], 1, "{list}");
    assert_eq!(list["apps"][0]["name"], "gamma");

    let (status, body) = edge.delete("/v1/apps/beta").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = edge.get("/v1/apps/beta").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, list) = edge.get("/v1/apps?org_slug=personal").await;
    assert_eq!(list["total_apps"], 1, "{list}");
    assert_eq!(list["apps"][0]["name"], "alpha");
    edge.shutdown().await;
}

/// Creating an app whose name exists is refused with 422 name_taken, whatever the org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_name_taken_is_422() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    for org in ["personal", "other-org"] {
        let (status, body) = edge
            .post("/v1/apps", json!({"app_name": APP, "org_slug": org}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["status"], "name_taken", "{body}");
    }
    let (_, list) = edge.get("/v1/apps?org_slug=other-org").await;
    assert_eq!(list["total_apps"], 0, "{list}");
    edge.shutdown().await;
}

/// A created machine has Fly's JSON shape: id, name, state, region, ids, config, image_ref, times, events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_create_has_fly_shape() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let mut config = seed_config(RUNTIME_IMAGE);
    config["my_custom_field"] = json!({"x": 1});
    let (status, created) = edge
        .post(&machines_path(APP), json!({"config": config}))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");

    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_string();
    assert_eq!(id.len(), 14, "{id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{id}"
    );

    let machine = edge.wait_for_state(APP, &id, "started", BOOT).await;
    for m in [&created, &machine] {
        assert_eq!(m["id"], id.as_str());
        assert!(
            m["name"].as_str().is_some_and(|n| !n.is_empty()),
            "no generated name: {m}"
        );
        assert_eq!(m["region"], "ams", "{m}");
        let instance_id = m["instance_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no instance_id: {m}"));
        assert_eq!(instance_id.len(), 26, "{instance_id}");
        assert!(
            instance_id
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() && !"ILOU".contains(c)),
            "not Crockford base32: {instance_id}"
        );
        let ip = m["private_ip"]
            .as_str()
            .unwrap_or_else(|| panic!("no private_ip: {m}"));
        ip.parse::<IpAddr>()
            .unwrap_or_else(|_| panic!("private_ip is not an address: {ip}"));
        assert_eq!(m["config"]["image"], RUNTIME_IMAGE);
        assert_eq!(m["config"]["env"], json!({"APP_ENV": "production"}));
        assert_eq!(m["config"]["services"], config["services"]);
        assert_eq!(
            m["config"]["my_custom_field"],
            json!({"x": 1}),
            "unknown config field lost: {m}"
        );
        assert_eq!(m["image_ref"]["repository"], RUNTIME_IMAGE, "{m}");
        assert!(
            m["image_ref"]["tag"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{m}"
        );
        for field in ["created_at", "updated_at"] {
            assert!(
                m[field].as_str().is_some_and(|t| !t.is_empty()),
                "no {field}: {m}"
            );
        }
    }
    assert_eq!(machine["name"], created["name"]);
    assert_eq!(machine["instance_id"], created["instance_id"]);
    assert_eq!(machine["private_ip"], created["private_ip"]);

    assert_events_well_formed(&machine);
    let types = event_types(&machine);
    assert!(
        position(&types, "start") < position(&types, "launch"),
        "not newest first: {types:?}"
    );
    assert_eq!(count_events(&machine, "launch"), 1);
    assert_eq!(count_events(&machine, "start"), 1);

    assert_eq!(machine_ids(&edge, APP).await, [id]);
    edge.shutdown().await;
}

/// A name given at creation is kept, and a region given must be a configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_name_and_region_given_are_kept() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let body = json!({"name": "my-worker", "region": "ams", "config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let (status, machine) = edge.post(&machines_path(APP), body).await;
    assert_eq!(status, StatusCode::OK, "{machine}");
    assert_eq!(machine["name"], "my-worker");
    assert_eq!(machine["region"], "ams");
    let fetched = edge.machine(APP, machine["id"].as_str().unwrap()).await;
    assert_eq!(fetched["name"], "my-worker");
    edge.shutdown().await;
}

/// An empty name is no name (as Fly takes it): the machine gets a generated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_machine_name_is_generated() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    for _ in 0..2 {
        let body = json!({"name": "", "config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
        let (status, machine) = edge.post(&machines_path(APP), body).await;
        assert_eq!(status, StatusCode::OK, "{machine}");
        assert!(!machine["name"].as_str().unwrap().is_empty(), "{machine}");
    }
    edge.shutdown().await;
}

/// Listing machines returns every machine of the app and none of another app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_list_is_per_app() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    edge.create_app("other-app").await;
    let a = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    let b = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    let c = edge
        .new_machine("other-app", RUNTIME_IMAGE)
        .created()
        .await
        .id;
    assert_ne!(a, b);
    let mut ids = machine_ids(&edge, APP).await;
    ids.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(machine_ids(&edge, "other-app").await, [c]);
    edge.shutdown().await;
}

/// With skip_launch the machine stays `created`; start then reports previous_state `created` and boots it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_launch_stays_created_until_started() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let id = id.as_str();
    assert_eq!(machine["state"], "created", "{machine}");
    assert_eq!(count_events(&machine, "start"), 0, "{machine}");
    assert!(
        machine_pids(id).is_empty(),
        "a skip_launch machine runs a process"
    );
    // Still created once a machine launched after it has booted: nothing boots it
    // behind our back.
    edge.new_machine(APP, RUNTIME_IMAGE).started().await;
    assert_eq!(edge.machine(APP, id).await["state"], "created");
    assert!(machine_pids(id).is_empty());

    let (status, body) = edge.post(&machine_path(APP, id, "/start"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["previous_state"], "created", "{body}");
    let machine = edge.wait_for_state(APP, id, "started", BOOT).await;
    assert_eq!(count_events(&machine, "start"), 1, "{machine}");
    assert_eq!(event_types(&machine)[0], "start", "{machine}");
    edge.shutdown().await;
}

/// Stop gives {"ok":true} and `stopped` with stop and exit events; start then reports `stopped` and reboots it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start() {
    let edge = TestEdge::start().await;
    let id = &edge.app_with_machine(RUNTIME_IMAGE).started().await.id;

    let (status, body) = edge.post(&machine_path(APP, id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true}));
    let stopped = edge.wait_for_state(APP, id, "stopped", BOOT).await;
    assert_events_well_formed(&stopped);
    let types = event_types(&stopped);
    let newest_boot = position(&types, "start");
    assert!(
        position(&types, "stop") < newest_boot,
        "stop not newer than start: {types:?}"
    );
    assert!(
        position(&types, "exit") < newest_boot,
        "exit not newer than start: {types:?}"
    );
    assert!(
        machine_pids(id).is_empty(),
        "a stopped machine still runs a process"
    );

    let (status, body) = edge.post(&machine_path(APP, id, "/start"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["previous_state"], "stopped", "{body}");
    let started = edge.wait_for_state(APP, id, "started", BOOT).await;
    assert_eq!(count_events(&started, "start"), 2, "{started}");
    assert_eq!(event_types(&started)[0], "start", "{started}");
    assert_events_well_formed(&started);
    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    edge.shutdown().await;
}

/// Starting a machine that is already running is a 409 with error JSON, and it keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_running_machine_is_409() {
    let edge = TestEdge::start().await;
    let Machine { id, json: before } = edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let id = id.as_str();

    let (status, body) = edge.post(&machine_path(APP, id, "/start"), json!({})).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let after = edge.machine(APP, id).await;
    assert_eq!(after["state"], "started");
    assert_eq!(
        count_events(&after, "start"),
        count_events(&before, "start")
    );
    edge.shutdown().await;
}

/// Deleting a running machine needs force: without it 409 and it keeps running, with it 200 ok and then 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_running_machine_needs_force() {
    let edge = TestEdge::start().await;
    let id = &edge.app_with_machine(RUNTIME_IMAGE).started().await.id;

    let (status, body) = edge.delete(&machine_path(APP, id, "")).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert_eq!(edge.machine(APP, id).await["state"], "started");

    let (status, body) = edge.delete(&machine_path(APP, id, "?force=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true}));
    let (status, body) = edge.get(&machine_path(APP, id, "")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    assert!(machine_ids(&edge, APP).await.is_empty());
    wait_until_no_process(id).await;
    edge.shutdown().await;
}

/// A machine that is not running (created or stopped) is deleted without force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_non_running_machine_needs_no_force() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let created_id = &edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    let (status, body) = edge.delete(&machine_path(APP, created_id, "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true}));

    let id = &edge.new_machine(APP, RUNTIME_IMAGE).started().await.id;
    let (status, body) = edge.post(&machine_path(APP, id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    edge.wait_for_state(APP, id, "stopped", BOOT).await;
    let (status, body) = edge.delete(&machine_path(APP, id, "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true}));

    for gone in [created_id, id] {
        let (status, body) = edge.get(&machine_path(APP, gone, "")).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    edge.shutdown().await;
}

/// A machine name already used in the app is refused with 422 name_taken; another app may use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_name_taken_is_422() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    edge.create_app("other-app").await;
    let body = json!({"name": "web", "config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let (status, first) = edge.post(&machines_path(APP), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let (status, err) = edge.post(&machines_path(APP), body.clone()).await;
    assert_error(status, &err, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["status"], "name_taken", "{err}");
    assert_eq!(machine_ids(&edge, APP).await, [id_of(&first)]);

    let (status, other) = edge.post(&machines_path("other-app"), body).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_eq!(other["name"], "web");
    edge.shutdown().await;
}

/// Without the right bearer token every /v1 call is 401 with error JSON, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_401() {
    let edge = TestEdge::start().await;
    let id = &edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let create_app = r#"{"app_name":"sneaky","org_slug":"personal"}"#;
    let calls = [
        (
            reqwest::Method::GET,
            "/v1/apps?org_slug=personal".to_string(),
            None,
        ),
        (reqwest::Method::GET, format!("/v1/apps/{APP}"), None),
        (
            reqwest::Method::POST,
            "/v1/apps".to_string(),
            Some(create_app),
        ),
        (reqwest::Method::GET, machines_path(APP), None),
        (
            reqwest::Method::POST,
            machine_path(APP, id, "/start"),
            Some("{}"),
        ),
        (
            reqwest::Method::DELETE,
            machine_path(APP, id, "?force=true"),
            None,
        ),
    ];
    for token in [None, Some("wrong-token"), Some("")] {
        for (method, path, body) in &calls {
            let (status, err) = raw(&edge, method.clone(), path, token, *body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {err}"
            );
            assert!(
                err["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {path}: {err}"
            );
        }
    }
    let (status, body) = edge.get("/v1/apps/sneaky").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(edge.machine(APP, id).await["state"], "created");
    edge.shutdown().await;
}

/// A body that is not JSON is a 400 with error JSON, for apps and machines alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_body_is_400() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    for path in ["/v1/apps".to_string(), machines_path(APP)] {
        let (status, body) = raw(
            &edge,
            reqwest::Method::POST,
            &path,
            Some(TOKEN),
            Some("{not json"),
        )
        .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
    assert!(machine_ids(&edge, APP).await.is_empty());
    edge.shutdown().await;
}

/// A machine config without an image is a 400 and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_400() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let mut config = seed_config(RUNTIME_IMAGE);
    config.as_object_mut().unwrap().remove("image");
    let (status, body) = edge
        .post(&machines_path(APP), json!({"config": config}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = edge
        .post(&machines_path(APP), json!({"skip_launch": true}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(machine_ids(&edge, APP).await.is_empty());
    edge.shutdown().await;
}

/// An image the edge does not know is a 400 and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_image_is_400() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let (status, body) = edge
        .post(
            &machines_path(APP),
            json!({"config": seed_config("nope/unknown:1")}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(machine_ids(&edge, APP).await.is_empty());
    edge.shutdown().await;
}

/// A region that is not configured is a 400 and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_region_is_400() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let body = json!({"region": "zzz", "config": seed_config(RUNTIME_IMAGE)});
    let (status, body) = edge.post(&machines_path(APP), body).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(machine_ids(&edge, APP).await.is_empty());
    edge.shutdown().await;
}

/// Unknown apps and unknown machines are 404 with error JSON on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_app_or_machine_is_404() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let missing_app = "no-such-app";
    let (status, body) = edge.get(&format!("/v1/apps/{missing_app}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = edge.delete(&format!("/v1/apps/{missing_app}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = edge.get(&machines_path(missing_app)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = edge
        .post(
            &machines_path(missing_app),
            json!({"config": seed_config(RUNTIME_IMAGE)}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    let missing = "0123456789abcd";
    let (status, body) = edge.get(&machine_path(APP, missing, "")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    for action in ["/start", "/stop"] {
        let (status, body) = edge
            .post(&machine_path(APP, missing, action), json!({}))
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, body) = edge
        .delete(&machine_path(APP, missing, "?force=true"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    // A machine of one app is not found under another.
    edge.create_app("other-app").await;
    let other = edge.new_machine("other-app", RUNTIME_IMAGE).created().await;
    let (status, body) = edge.get(&machine_path(APP, &other.id, "")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// Deleting an app with a running machine is 409; with force it is 202, the machine stops and the app is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_delete_with_running_machine_needs_force() {
    let edge = TestEdge::start().await;
    let id = &edge.app_with_machine(RUNTIME_IMAGE).started().await.id;

    let (status, body) = edge.delete(&format!("/v1/apps/{APP}")).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert_eq!(edge.machine(APP, id).await["state"], "started");

    let (status, body) = edge.delete(&format!("/v1/apps/{APP}?force=true")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = edge.get(&format!("/v1/apps/{APP}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = edge.get(&machines_path(APP)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, list) = edge.get("/v1/apps?org_slug=personal").await;
    assert_eq!(list["total_apps"], 0, "{list}");
    wait_until_no_process(id).await;
    edge.shutdown().await;
}

/// The edge routes a request for the app to the machine the API booted, naming it in a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reaches_machine_created_by_api() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).launched().await.id;
    let id = id.as_str();

    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    let header = res
        .headers()
        .get("edgewake-machine")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header.as_deref(), Some(id));
    let body: Value = res.json().await.expect("JSON body");
    assert_eq!(body["machine_id"], id, "{body}");
    edge.shutdown().await;
}

/// `curl -d '{...}'` without a JSON Content-Type (curl then sends a form type) still
/// creates the app, as such calls written for Fly expect; a 405 is Fly's error JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_body_without_json_content_type_is_accepted() {
    let edge = TestEdge::start().await;
    let res = edge
        .client
        .post(edge.api_url("/v1/apps"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"app_name": "formed", "org_slug": "personal"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let (status, body) = edge
        .api(reqwest::Method::PUT, "/v1/apps/formed", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["error"].is_string(), "{body}");
    edge.shutdown().await;
}
