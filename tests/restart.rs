//! Machines are permanent: apps and machines survive a restart of edgewake, and after
//! a crash their states match reality again.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// A clean restart keeps every app and machine; running machines come back `stopped`
/// (their processes gone) and wake on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_apps_and_machines() {
    let edge = TestEdge::start().await;
    let Machine { id, json: running } = edge.app_with_machine(RUNTIME_IMAGE).started().await;
    edge.create_app("other").await;
    let idle = edge.new_machine("other", RUNTIME_IMAGE).created().await;
    let before = [running, idle.json];

    let edge = edge.restart().await;
    assert!(
        machine_pids(&id).is_empty(),
        "no machine process outlives a clean shutdown"
    );
    let (_, apps) = edge.get("/v1/apps?org_slug=personal").await;
    assert_eq!(apps["total_apps"], 2);
    let after = edge.machine(APP, &id).await;
    assert_eq!(after["state"], "stopped");
    let idle_after = edge.machine("other", &idle.id).await;
    assert_eq!(idle_after["state"], "created");
    for (old, new) in before.iter().zip([&after, &idle_after]) {
        for key in [
            "id",
            "name",
            "region",
            "private_ip",
            "config",
            "instance_id",
            "created_at",
        ] {
            assert_eq!(old[key], new[key], "{key} survives the restart");
        }
    }

    let res = edge.request(APP, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    edge.shutdown().await;
}

/// A machine with `restart.policy = "always"` that was running is started again when
/// edgewake comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_always_comes_back_started() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["restart"] = json!({"policy": "always"}))
        .started()
        .await
        .id;

    let edge = edge.restart().await;
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    assert_eq!(machine_pids(&id).len(), 1);
    edge.shutdown().await;
}

/// An edgewake process with an app whose one machine a request has woken; its id.
async fn spawn_with_running_machine(
    dir: &std::path::Path,
    range: &str,
) -> (EdgewakeProcess, String) {
    let process = EdgewakeProcess::spawn(dir, range).await;
    let api = ApiClient::new(process.api);
    api.post("/v1/apps", json!({"app_name": APP, "org_slug": "personal"}))
        .await;
    let machine = api
        .post(
            &machines_path(APP),
            json!({"config": seed_config(RUNTIME_IMAGE)}),
        )
        .await;
    let id = machine["id"].as_str().unwrap().to_string();
    assert_eq!(api.edge_get(process.http, APP).await, StatusCode::OK);
    assert_eq!(machine_pids(&id).len(), 1, "the machine runs");
    (process, id)
}

/// After edgewake is killed, the restarted edgewake kills the orphaned machine process,
/// reports the machine `stopped`, wakes it on request, and a SIGTERM then exits 0
/// leaving no machine process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_leaves_no_orphans_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let range = random_loopback_range();
    let (first, id) = spawn_with_running_machine(dir.path(), &range).await;

    first.signal("KILL");
    first.exit_code().await;
    assert_eq!(
        machine_pids(&id).len(),
        1,
        "a crash leaves the machine process behind"
    );

    let second = EdgewakeProcess::spawn(dir.path(), &range).await;
    let api = ApiClient::new(second.api);
    assert!(
        machine_pids(&id).is_empty(),
        "the orphan was killed at boot"
    );
    let machine = api.get(&machine_path(APP, &id, "")).await;
    assert_eq!(machine["state"], "stopped");
    assert_eq!(api.edge_get(second.http, APP).await, StatusCode::OK);
    assert_eq!(machine_pids(&id).len(), 1);

    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
    assert!(
        machine_pids(&id).is_empty(),
        "a clean shutdown stops the machines"
    );
}

/// A test's edgewake dropped while its machine runs (the test ended, or failed) takes
/// the machine with it: nothing a test started keeps running on the machine after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_edgewake_leaves_no_machine_running() {
    let dir = tempfile::tempdir().unwrap();
    let range = random_loopback_range();
    let (process, id) = spawn_with_running_machine(dir.path(), &range).await;
    drop(process);
    wait::until_true("the machine to be gone", BOOT, async || {
        machine_pids(&id).is_empty()
    })
    .await;
}

/// Crash after crash, a `restart.policy = "always"` machine comes back started with
/// exactly one process: each new edgewake waits for the killed run to be gone before
/// starting the machine again, instead of racing it for the machine's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_always_survives_crash_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let range = random_loopback_range();
    let mut edgewake = EdgewakeProcess::spawn(dir.path(), &range).await;
    let api = ApiClient::new(edgewake.api);
    api.post("/v1/apps", json!({"app_name": APP, "org_slug": "personal"}))
        .await;
    let mut config = seed_config(RUNTIME_IMAGE);
    config["restart"] = json!({"policy": "always"});
    let machine = api
        .post(&machines_path(APP), json!({"config": config}))
        .await;
    let id = machine["id"].as_str().unwrap().to_string();
    for cycle in 0..4 {
        let api = ApiClient::new(edgewake.api);
        wait::until_true("the machine started", BOOT, async || {
            api.get(&machine_path(APP, &id, "")).await["state"] == "started"
        })
        .await;
        assert_eq!(machine_pids(&id).len(), 1, "cycle {cycle}: one run");
        assert_eq!(api.edge_get(edgewake.http, APP).await, StatusCode::OK);
        edgewake.signal("KILL");
        edgewake.exit_code().await;
        edgewake = EdgewakeProcess::spawn(dir.path(), &range).await;
    }
    edgewake.signal("TERM");
    assert_eq!(edgewake.exit_code().await, Some(0));
}

/// With the sandbox driver too: a crash leaves the container running; the restarted
/// edgewake removes it (and its mounted root) at boot, reports the machine `stopped`,
/// and wakes it again on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_crash_leaves_no_container_behind() {
    let dir = tempfile::tempdir().unwrap();
    let image = "edgewake.test/functions:1";
    sandbox::import_test_image(&dir.path().join("data"), image);
    let network = sandbox::random_sandbox_network();
    let first = EdgewakeProcess::spawn_sandboxed(dir.path(), &network).await;
    let api = ApiClient::new(first.api);
    api.post("/v1/apps", json!({"app_name": APP, "org_slug": "personal"}))
        .await;
    let path = machines_path(APP);
    let machine = api.post(&path, json!({"config": seed_config(image)})).await;
    let id = machine["id"].as_str().unwrap().to_string();
    assert_eq!(api.edge_get(first.http, APP).await, StatusCode::OK);
    // Its init and its program.
    assert_eq!(machine_pids(&id).len(), 2, "the machine runs");
    let root = dir.path().join("data/machines").join(&id).join("rootfs");
    let mounted = || {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts.contains(root.to_str().unwrap())
    };
    assert!(mounted());

    first.signal("KILL");
    first.exit_code().await;
    assert_eq!(machine_pids(&id).len(), 2, "a crash leaves the container");

    let second = EdgewakeProcess::spawn_sandboxed(dir.path(), &network).await;
    let api = ApiClient::new(second.api);
    assert!(
        machine_pids(&id).is_empty(),
        "the container was removed at boot"
    );
    assert!(!mounted(), "its root was unmounted");
    let machine = api.get(&format!("{path}/{id}")).await;
    assert_eq!(machine["state"], "stopped");
    assert_eq!(api.edge_get(second.http, APP).await, StatusCode::OK);
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
    assert!(machine_pids(&id).is_empty(), "shutdown stops the container");
    assert!(!mounted());
}

/// A small API client for an edgewake running in another process.
struct ApiClient {
    client: reqwest::Client,
    api: std::net::SocketAddr,
}

impl ApiClient {
    fn new(api: std::net::SocketAddr) -> ApiClient {
        ApiClient {
            client: reqwest::Client::new(),
            api,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .client
            .post(format!("http://{}{path}", self.api))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let res = self
            .client
            .get(format!("http://{}{path}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    }

    async fn edge_get(&self, http: std::net::SocketAddr, app: &str) -> StatusCode {
        let res = self
            .client
            .get(format!("http://{http}/"))
            .header("host", format!("{app}.localhost"))
            .send()
            .await
            .unwrap();
        res.status()
    }
}

/// What edgewake keeps on disk is its own: the data dir cannot be listed by others and
/// the state database (machines' environments) is readable by its owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_on_disk_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let mode = |name: &str| {
        let path = edge.config.data_dir.join(name);
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(""), 0o711, "others may pass through, not list");
    assert_eq!(mode("edgewake.db"), 0o600);
    assert_eq!(mode("edgewake.db-wal"), 0o600);
    edge.shutdown().await;
}
