//! Lifecycle calls beyond start and stop: restart, signal, suspend, cordon/uncordon,
//! metadata and leases.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// A call with the lease nonce header (or none).
async fn with_nonce(
    edge: &TestEdge,
    method: reqwest::Method,
    path: &str,
    nonce: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = edge.api_request(method, path);
    if let Some(nonce) = nonce {
        req = req.header("fly-machine-lease-nonce", nonce);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req).await
}

/// Restart runs a new process for the machine and answers once it serves again; a
/// machine that is not started cannot be restarted (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_runs_a_new_process() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let before = machine_pids(&id);
    assert_eq!(before.len(), 1, "{before:?}");

    let (status, body) = edge
        .post(&machine_path(APP, &id, "/restart?timeout=5"), json!({}))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "started");
    assert_eq!(
        &event_types(&machine)[..3],
        ["start", "exit", "restart"],
        "{machine}"
    );
    let after = machine_pids(&id);
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "the same process still runs");
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);

    edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/restart"), json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = edge
        .post(
            &machine_path(APP, &id, "/restart?signal=SIGNOPE"),
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// A signal reaches the machine's process — by number (9 kills it) or by name
/// (SIGTERM makes the runtime exit 0) — and its exit is recorded; a stopped machine
/// cannot be signalled (409), a bad signal is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_reaches_the_process() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/signal"), json!({"signal": 9}))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    let machine = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert_eq!(
        machine["events"][0]["request"]["exit_event"]["signal"], 9,
        "{machine}"
    );

    edge.post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    let (status, _) = edge
        .post(
            &machine_path(APP, &id, "/signal"),
            json!({"signal": "SIGTERM"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let machine = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert_eq!(
        machine["events"][0]["request"]["exit_event"]["exit_code"], 0,
        "{machine}"
    );

    let (status, body) = edge
        .post(
            &machine_path(APP, &id, "/signal"),
            json!({"signal": "SIGHUP"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = edge
        .post(
            &machine_path(APP, &id, "/signal"),
            json!({"signal": "SIGNOPE"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/signal"), json!({}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// Suspend stops the machine (there are no snapshots here) and its event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_and_says_so() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/suspend"), json!({}))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "stopped");
    assert!(machine_pids(&id).is_empty());
    let suspend = &machine["events"][1];
    assert_eq!(suspend["type"], "suspend", "{machine}");
    let message = suspend["request"]["message"].as_str().unwrap();
    assert!(message.contains("stopped instead"), "{message}");
    edge.shutdown().await;
}

/// A cordoned machine gets no proxied traffic (the other machine takes all of it, or
/// the app has none to offer: 503); uncordon restores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_machine_gets_no_traffic() {
    let edge = TestEdge::start().await;
    let a = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let b = edge.new_machine(APP, RUNTIME_IMAGE).started().await.id;
    let served_by = |res: &reqwest::Response| {
        res.headers()["edgewake-machine"]
            .to_str()
            .unwrap()
            .to_string()
    };

    let (status, body) = edge
        .post(&machine_path(APP, &a, "/cordon"), json!({}))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    assert_eq!(edge.machine(APP, &a).await["cordoned"], true);
    for _ in 0..20 {
        assert_eq!(served_by(&edge.request(APP, "/").await), b);
    }
    edge.post(&machine_path(APP, &b, "/cordon"), json!({}))
        .await;
    assert_eq!(
        edge.request(APP, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    edge.post(&machine_path(APP, &b, "/uncordon"), json!({}))
        .await;
    edge.post(&machine_path(APP, &b, "/stop"), json!({})).await;
    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        served_by(&res),
        b,
        "uncordoned machine woken, cordoned one left alone"
    );
    edge.post(&machine_path(APP, &a, "/uncordon"), json!({}))
        .await;
    assert_eq!(edge.machine(APP, &a).await["cordoned"], false);
    edge.shutdown().await;
}

/// `skip_service_registration` creates the machine cordoned: requests do not wake it
/// (503) until it is uncordoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_service_registration_means_cordoned() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge
        .app_with_machine(RUNTIME_IMAGE)
        .with("skip_service_registration", true)
        .created()
        .await;
    assert_eq!(machine["cordoned"], true);
    assert_eq!(
        edge.request(APP, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(edge.machine(APP, &id).await["state"], "created");
    edge.post(&machine_path(APP, &id, "/uncordon"), json!({}))
        .await;
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    edge.shutdown().await;
}

/// Metadata: set, read by key and whole, bulk update (null removes), delete — 204s,
/// the machine's version unchanged; a stale machine_version is 412, a bad key 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_get_set_delete_and_bulk() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let version = machine["instance_id"].clone();
    let meta = |rest: &str| machine_path(APP, &id, &format!("/metadata{rest}"));

    let (status, _) = edge.post(&meta("/role"), json!({"value": "worker"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = edge.get(&meta("/role")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"value": "worker"})));
    let (_, all) = edge.get(&meta("")).await;
    assert_eq!(all, json!({"role": "worker"}));

    let bulk = json!({"metadata": {"tier": "gold", "role": null}, "machine_version": version});
    let (status, body) = edge
        .api(reqwest::Method::PATCH, &meta(""), Some(bulk))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, all) = edge.get(&meta("")).await;
    assert_eq!(all, json!({"tier": "gold"}));
    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["config"]["metadata"], json!({"tier": "gold"}));
    assert_eq!(machine["instance_id"], version);

    let stale = json!({"metadata": {"x": "1"}, "machine_version": "01AAAAAAAAAAAAAAAAAAAAAAAA"});
    let (status, body) = edge.api(reqwest::Method::PUT, &meta(""), Some(stale)).await;
    assert_error(status, &body, StatusCode::PRECONDITION_FAILED);
    let (status, _) = edge.delete(&meta("/tier")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = edge.get(&meta("/tier")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = edge.post(&meta("/bad%20key"), json!({"value": "x"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = edge.post(&meta("/k"), json!({"value": 5})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// A lease blocks changing calls without its nonce (409) and allows them with it; it is
/// refreshed and released only with the nonce, and shown without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_blocks_changes_without_its_nonce() {
    use reqwest::Method as M;
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let lease_path = machine_path(APP, &id, "/lease");
    let body = json!({"ttl": 60, "description": "deploy"});
    let (status, lease) = edge.post(&lease_path, body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a new lease is 200, as Fly answers: {lease}"
    );
    assert_eq!(lease["status"], "success");
    let nonce = lease["data"]["nonce"].as_str().unwrap().to_string();
    assert!(!nonce.is_empty() && lease["data"]["expires_at"].as_u64().unwrap() > 0);

    for (method, rest, body) in [
        (M::POST, "/stop", None),
        (M::POST, "/cordon", None),
        (M::POST, "/metadata/k", Some(json!({"value": "v"}))),
        (M::DELETE, "?force=true", None),
    ] {
        for wrong in [None, Some("not-the-nonce")] {
            let (status, body) = with_nonce(
                &edge,
                method.clone(),
                &machine_path(APP, &id, rest),
                wrong,
                body.clone(),
            )
            .await;
            assert_error(status, &body, StatusCode::CONFLICT);
        }
    }
    assert_eq!(
        edge.machine(APP, &id).await["state"],
        "started",
        "a blocked stop stopped it"
    );
    let (status, _) = with_nonce(
        &edge,
        M::POST,
        &machine_path(APP, &id, "/stop"),
        Some(&nonce),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, shown) = edge.get(&lease_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&shown["data"]["description"], &shown["data"]["nonce"]),
        (&json!("deploy"), &json!(""))
    );
    let (status, body) = edge.post(&lease_path, json!({"ttl": 60})).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, refreshed) = with_nonce(
        &edge,
        M::POST,
        &lease_path,
        Some(&nonce),
        Some(json!({"ttl": 120})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refreshed["data"]["nonce"], nonce.as_str());
    assert!(refreshed["data"]["expires_at"].as_u64() > lease["data"]["expires_at"].as_u64());

    let (status, body) = edge.delete(&lease_path).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = with_nonce(&edge, M::DELETE, &lease_path, Some(&nonce), None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"status": "success", "data": {"ok": true}})
        )
    );
    let (status, body) = edge.get(&lease_path).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _) = edge
        .post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "released: anyone may change it again"
    );
    edge.shutdown().await;
}

/// A machine created with `lease_ttl` comes back with the lease's `nonce`, and the
/// lease holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_lease_ttl_returns_the_nonce() {
    let edge = TestEdge::start().await;
    let Machine { id, json: machine } = edge
        .app_with_machine(RUNTIME_IMAGE)
        .with("lease_ttl", 30)
        .created()
        .await;
    let nonce = machine["nonce"].as_str().expect("nonce in the answer");
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let start = machine_path(APP, &id, "/start");
    let (status, _) = with_nonce(&edge, reqwest::Method::POST, &start, Some(nonce), None).await;
    assert_eq!(status, StatusCode::OK);
    edge.shutdown().await;
}

/// Fly's exec runs a command in a started machine (the process driver runs it in the
/// machine's directory with its environment) and answers its output and exit code (127
/// for a command that does not exist, as a shell says); a stopped machine answers 409,
/// a body without a command 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_command_in_the_machine() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let path = machine_path(APP, &id, "/exec");
    let body = json!({"command": ["sh", "-c", "echo $FLY_MACHINE_ID; echo oops >&2; exit 4"]});
    let (status, output) = edge.post(&path, body).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_eq!(output["stdout"], format!("{id}\n"));
    assert_eq!(output["stderr"], "oops\n");
    assert_eq!(output["exit_code"], 4);
    let missing = json!({"command": ["edgewake-no-such-command", "x"]});
    let (status, output) = edge.post(&path, missing).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_eq!(
        output["exit_code"], 127,
        "as `cmd` (sh -c) answers: {output}"
    );
    let (_, by_shell) = edge
        .post(&path, json!({"cmd": "edgewake-no-such-command"}))
        .await;
    assert_eq!(by_shell["exit_code"], 127, "{by_shell}");
    let (status, body) = edge.post(&path, json!({"command": []})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, _) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = edge.post(&path, json!({"cmd": "true"})).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    edge.shutdown().await;
}
