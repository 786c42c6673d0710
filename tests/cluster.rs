//! Several edges, one cluster: three nats-server processes as one JetStream cluster and
//! three edgewake nodes (ams, syd, cdg) as real processes on loopback. Apps and
//! machines are seen everywhere, requests and API calls reach the node that hosts
//! their machine, and nodes and NATS servers fail and come back.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::cluster::*;
use support::*;

/// The nats servers and the three nodes, formed: every node sees the others up.
struct World {
    nats: NatsCluster,
    ams: Node,
    syd: Node,
    cdg: Node,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path());
    let urls = nats.urls();
    let (ams, syd, cdg) = tokio::join!(
        Node::start(dir.path(), "ams-1", "ams", &urls),
        Node::start(dir.path(), "syd-1", "syd", &urls),
        Node::start(dir.path(), "cdg-1", "cdg", &urls),
    );
    for node in [&ams, &syd, &cdg] {
        wait_until_formed(node, 3).await;
    }
    World {
        nats,
        ams,
        syd,
        cdg,
        _dir: dir,
    }
}

/// Creates app `APP` through `node` and waits until every node of `all` sees it.
async fn create_app(node: &Node, all: &[&Node]) {
    let body = json!({"app_name": APP, "org_slug": "personal"});
    let (status, answer) = node.post("/v1/apps", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    for other in all {
        let path = format!("/v1/apps/{APP}");
        wait::until(&format!("app on {}", other.name), SETTLE, async || {
            match other.get(&path).await {
                (StatusCode::OK, app) => Ok(app),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await;
    }
}

/// Creates a machine through `node` in `region`, left `created` (it wakes on a
/// request); returns its id once every node of `all` sees it.
async fn machine_in(node: &Node, region: &str, all: &[&Node]) -> String {
    let body = json!({"config": seed_config(RUNTIME_IMAGE), "region": region, "skip_launch": true});
    let (status, machine) = node.post(&machines_path(APP), body).await;
    assert_eq!(status, StatusCode::OK, "{machine}");
    let id = id_of(&machine);
    for other in all {
        other.wait_for_state(APP, &id, "created").await;
    }
    id
}

/// The region and machine that served a request, and what the machine saw.
async fn served(request: reqwest::RequestBuilder) -> (StatusCode, String, String, Value) {
    let res = request.send().await.expect("the edge answers");
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (region, machine) = (header("edgewake-region"), header("edgewake-machine"));
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, region, machine, body)
}

/// The pid's parent, from /proc.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(1).unwrap().parse().unwrap()
}

/// An app made on ams is seen on syd and cdg and its name cannot be taken there; a
/// machine created through cdg for region syd runs on the syd node; a client in Sydney
/// landing on the ams edge is served by that machine, woken by its request and told
/// the ams edge's region; a client in France on the syd edge is served by cdg; stop,
/// start and destroy work through nodes that do not host the machine; and the
/// backhaul refuses a request without the cluster's credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_machines_and_requests_cross_the_cluster() {
    let w = world().await;
    let all = [&w.ams, &w.syd, &w.cdg];
    create_app(&w.ams, &all).await;
    let taken = json!({"app_name": APP, "org_slug": "personal"});
    let (status, body) = w.cdg.post("/v1/apps", taken).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["status"], "name_taken");

    let syd = machine_in(&w.cdg, "syd", &all).await;
    let cdg = machine_in(&w.ams, "cdg", &all).await;

    let (status, region, machine, seen) = served(w.ams.request(APP, "/", IN_SYDNEY)).await;
    assert_eq!((status, region.as_str(), machine.as_str()), (StatusCode::OK, "syd", syd.as_str()));
    assert_eq!(seen["headers"]["fly-region"], "ams", "{seen}");
    assert_eq!(seen["headers"]["fly-client-ip"], IN_SYDNEY, "{seen}");
    let woken = w.syd.wait_for_state(APP, &syd, "started").await;
    assert_eq!(count_events(&woken, "start"), 1, "{woken}");
    let pids = machine_pids(&syd);
    assert!(!pids.is_empty());
    assert!(pids.iter().all(|pid| parent_of(*pid) == w.syd.pid()), "runs on the syd node");

    let (status, region, machine, _) = served(w.syd.request(APP, "/", IN_FRANCE)).await;
    assert_eq!((status, region.as_str(), machine.as_str()), (StatusCode::OK, "cdg", cdg.as_str()));

    let (status, body) = w.cdg.post(&machine_path(APP, &syd, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.ams.wait_for_state(APP, &syd, "stopped").await;
    let (status, body) = w.ams.post(&machine_path(APP, &syd, "/start"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.cdg.wait_for_state(APP, &syd, "started").await;
    let (status, body) = w.ams.delete(&machine_path(APP, &syd, "?force=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for node in all {
        let path = machine_path(APP, &syd, "");
        wait::until_true("the machine gone everywhere", SETTLE, async || {
            node.get(&path).await.0 == StatusCode::NOT_FOUND
        })
        .await;
    }
    wait_until_no_process(&syd).await;

    let raw = reqwest::Client::new()
        .get(format!("http://{}/", w.syd.backhaul))
        .header("host", format!("{APP}.localhost"))
        .header("edgewake-backhaul-app", APP)
        .header("edgewake-backhaul-machine", &cdg)
        .header("edgewake-backhaul-port", "80")
        .header("fly-request-id", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::FORBIDDEN);
    drop(w.nats);
}
