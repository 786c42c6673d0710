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
        wait::until(
            &format!("app on {}", other.name),
            SETTLE,
            async || match other.get(&path).await {
                (StatusCode::OK, app) => Ok(app),
                (status, body) => Err(format!("{status} {body}")),
            },
        )
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
    assert_eq!(
        (status, region.as_str(), machine.as_str()),
        (StatusCode::OK, "syd", syd.as_str())
    );
    assert_eq!(seen["headers"]["fly-region"], "ams", "{seen}");
    assert_eq!(seen["headers"]["fly-client-ip"], IN_SYDNEY, "{seen}");
    let woken = w.syd.wait_for_state(APP, &syd, "started").await;
    assert_eq!(count_events(&woken, "start"), 1, "{woken}");
    let pids = machine_pids(&syd);
    assert!(!pids.is_empty());
    assert!(
        pids.iter().all(|pid| parent_of(*pid) == w.syd.pid()),
        "runs on the syd node"
    );

    let (status, region, machine, _) = served(w.syd.request(APP, "/", IN_FRANCE)).await;
    assert_eq!(
        (status, region.as_str(), machine.as_str()),
        (StatusCode::OK, "cdg", cdg.as_str())
    );

    let misdirected = w
        .ams
        .api_request(reqwest::Method::POST, &machine_path(APP, &syd, "/stop"))
        .header("edgewake-forwarded-by", "cdg-1")
        .json(&json!({}));
    let (status, body) = answer(misdirected).await;
    assert_error(status, &body, StatusCode::MISDIRECTED_REQUEST);
    let (_, machine) = w.syd.get(&machine_path(APP, &syd, "")).await;
    assert_eq!(
        machine["state"], "started",
        "not stopped by a node that does not host it"
    );

    let (status, body) = w
        .cdg
        .post(&machine_path(APP, &syd, "/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.ams.wait_for_state(APP, &syd, "stopped").await;
    let (status, body) = w
        .ams
        .post(&machine_path(APP, &syd, "/start"), json!({}))
        .await;
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

    let raw = unsigned(&w.syd, &cdg).send().await.unwrap();
    assert_eq!(raw.status(), StatusCode::FORBIDDEN);
    drop(w.nats);
}

/// A backhaul request naming a machine, without the cluster's credential.
fn unsigned(node: &Node, machine: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .get(format!("http://{}/", node.backhaul))
        .header("host", format!("{APP}.localhost"))
        .header("edgewake-backhaul-app", APP)
        .header("edgewake-backhaul-machine", machine)
        .header("edgewake-backhaul-port", "80")
        .header("fly-request-id", "forged")
}

/// The backhaul holds at most `cluster.max_backhaul_connections` connections: with
/// that many held open by strangers, one more waits unanswered while the node's public
/// edge goes on serving, and is answered (refused: it is unsigned) once one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backhaul_holds_a_bounded_number_of_connections() {
    let w = world().await;
    let all = [&w.ams, &w.syd, &w.cdg];
    create_app(&w.ams, &all).await;
    let cdg = machine_in(&w.ams, "cdg", &all).await;
    let mut held = Vec::new();
    for _ in 0..MAX_BACKHAUL_CONNECTIONS {
        held.push(
            tokio::net::TcpStream::connect(w.syd.backhaul)
                .await
                .unwrap(),
        );
    }
    let (status, _, machine, _) = served(w.syd.request(APP, "/", IN_FRANCE)).await;
    assert_eq!((status, machine.as_str()), (StatusCode::OK, cdg.as_str()));
    let mut extra = tokio::spawn(unsigned(&w.syd, &cdg).send());
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut extra).await;
    assert!(waited.is_err(), "answered past the limit: {waited:?}");
    drop(held.pop());
    let refused = extra.await.unwrap().unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    drop(w.nats);
}

/// Opens a WebSocket to the app's `/ws` echo through `node`'s edge, for a client in
/// Sydney.
async fn websocket(node: &Node) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(node.listeners.http)
        .await
        .unwrap();
    let request = http::Request::builder()
        .uri(format!("ws://{APP}.localhost/ws"))
        .header("host", format!("{APP}.localhost"))
        .header("x-forwarded-for", IN_SYDNEY)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// Through the ams edge to a machine the syd node hosts: a WebSocket echoes, server-sent
/// events arrive one by one, a 16 MiB upload arrives whole, an HTTP/2 client is
/// served; then 200 concurrent requests through two edges to that machine, stopped,
/// start it exactly once and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_herds_cross_the_backhaul() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let w = world().await;
    let all = [&w.ams, &w.syd, &w.cdg];
    create_app(&w.ams, &all).await;
    let syd = machine_in(&w.ams, "syd", &all).await;

    let mut socket = websocket(&w.ams).await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    socket.close(None).await.unwrap();

    let mut events = w
        .ams
        .request(APP, "/events?stream=3&interval=300", IN_SYDNEY)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["edgewake-machine"], syd.as_str());
    let first = events.chunk().await.unwrap().unwrap();
    assert_eq!(
        &first[..],
        b"data: 0\n\n",
        "only the first event is written yet"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = events.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: 1\n\ndata: 2\n\n");

    let size = 16 * 1024 * 1024;
    let upload = reqwest::Client::new()
        .post(format!("http://{}/upload", w.ams.listeners.http))
        .header("host", format!("{APP}.localhost"))
        .header("x-forwarded-for", IN_SYDNEY)
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.headers()["edgewake-machine"], syd.as_str());
    let body: Value = upload.json().await.unwrap();
    assert_eq!(body["body_bytes"], size);

    let tcp = tokio::net::TcpStream::connect(w.ams.listeners.http)
        .await
        .unwrap();
    let mut h2 = support::tls::http2_over(tcp).await;
    let mut req = support::tls::get(&format!("{APP}.localhost"), "/");
    req.headers_mut()
        .insert("x-forwarded-for", IN_SYDNEY.parse().unwrap());
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(
        (res.status(), res.version()),
        (StatusCode::OK, http::Version::HTTP_2)
    );
    assert_eq!(res.headers()["edgewake-machine"], syd.as_str());

    let (status, body) = w
        .syd
        .post(&machine_path(APP, &syd, "/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.ams.wait_for_state(APP, &syd, "stopped").await;
    w.cdg.wait_for_state(APP, &syd, "stopped").await;
    let herd: Vec<_> = (0..200)
        .map(|i| {
            let edge = if i % 2 == 0 { &w.ams } else { &w.cdg };
            spawn_request(edge.request(APP, "/", IN_SYDNEY))
        })
        .collect();
    for request in herd {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.headers["edgewake-machine"], syd.as_str());
    }
    let machine = w.syd.wait_for_state(APP, &syd, "started").await;
    assert_eq!(
        count_events(&machine, "start"),
        2,
        "the first wake and one for the herd: {machine}"
    );
    drop(w.nats);
}

/// The syd node killed: within the heartbeat timeout a client in Sydney is served by
/// the next region (ams) on every edge; restarted, the syd node takes its machine back
/// from SQLite and serves Sydney again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_skipped_then_comes_back() {
    let mut w = world().await;
    let all = [&w.ams, &w.syd, &w.cdg];
    create_app(&w.ams, &all).await;
    let syd = machine_in(&w.ams, "syd", &all).await;
    let ams = machine_in(&w.ams, "ams", &all).await;
    let (_, _, machine, _) = served(w.cdg.request(APP, "/", IN_SYDNEY)).await;
    assert_eq!(machine, syd);

    w.syd.kill();
    let killed = std::time::Instant::now();
    for edge in [&w.ams, &w.cdg] {
        let (status, region, machine, _) = served(edge.request(APP, "/", IN_SYDNEY)).await;
        assert_eq!(
            (status, region.as_str(), machine.as_str()),
            (StatusCode::OK, "ams", ams.as_str()),
            "{}",
            edge.name
        );
    }
    wait::until_true("syd marked down", SETTLE, async || {
        w.ams.status().is_ok_and(|nodes| {
            nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "syd-1" && n["up"] == false)
        })
    })
    .await;
    assert!(
        killed.elapsed() < HEARTBEAT_TIMEOUT * 3,
        "{:?}",
        killed.elapsed()
    );

    w.syd.restart().await;
    wait_until_formed(&w.ams, 3).await;
    let back = w.ams.wait_for_state(APP, &syd, "stopped").await;
    assert_eq!(back["id"], syd.as_str());
    let served_again = wait::until("Sydney served by syd again", SETTLE, async || match served(
        w.cdg.request(APP, "/", IN_SYDNEY),
    )
    .await
    {
        (StatusCode::OK, region, machine, _) if machine == syd => Ok(region),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(served_again, "syd");
    drop(w.nats);
}

/// One NATS server killed: apps and machines are still made and served. Back and
/// caught up, then all three killed at once: every edge still routes from its last
/// view (to its own machines and across the backhaul), and API changes answer 503 with
/// Fly's error JSON. Once they are back, changes are accepted again and a machine
/// stopped meanwhile is seen stopped everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_failures_keep_routing_and_refuse_changes() {
    let mut w = world().await;
    let all = [&w.ams, &w.syd, &w.cdg];
    w.nats.kill(0);
    // Clients reconnect to the other servers, which elect new leaders for the buckets:
    // for that moment a change may answer 503, then it is made.
    app_made_once_accepted(&w.ams, APP).await;
    for node in all {
        wait::until_true("the app everywhere", SETTLE, async || {
            node.get(&format!("/v1/apps/{APP}")).await.0 == StatusCode::OK
        })
        .await;
    }
    let syd = machine_in(&w.cdg, "syd", &all).await;
    let cdg = machine_in(&w.syd, "cdg", &all).await;
    let (status, _, machine, _) = served(w.ams.request(APP, "/", IN_SYDNEY)).await;
    assert_eq!((status, machine.as_str()), (StatusCode::OK, syd.as_str()));
    w.nats.restart(0);
    // All three die only once server 0 has caught up: a stale copy would drag out the
    // elections after they restart (see `wait_until_caught_up`).
    w.nats.wait_until_caught_up(0).await;
    w.nats.kill_all();
    for (edge, client, machine) in [
        (&w.ams, IN_SYDNEY, &syd),
        (&w.syd, IN_FRANCE, &cdg),
        (&w.cdg, IN_FRANCE, &cdg),
    ] {
        let (status, _, served_by, _) = served(edge.request(APP, "/", client)).await;
        assert_eq!(
            (status, served_by.as_str()),
            (StatusCode::OK, machine.as_str()),
            "{}",
            edge.name
        );
    }
    let (status, body) = w
        .ams
        .post(&machine_path(APP, &syd, "/stop"), json!({}))
        .await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = w
        .syd
        .post(&machine_path(APP, &syd, "/stop"), json!({}))
        .await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = w.cdg.post("/v1/apps", json!({"app_name": "other"})).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = w.cdg.get(&machine_path(APP, &syd, "")).await;
    assert_eq!(status, StatusCode::OK, "reads still come from the view");

    for i in 0..3 {
        w.nats.restart(i);
    }
    let stop = machine_path(APP, &syd, "/stop");
    wait::until("changes accepted again", SETTLE, async || {
        match w.cdg.post(&stop, json!({})).await {
            (StatusCode::OK, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    // Accepted while NATS still elects the buckets' leaders: syd's puts are refused
    // until then, and tried again.
    for node in all {
        node.wait_for_state(APP, &syd, "stopped").await;
    }
    app_made_once_accepted(&w.ams, "other").await;
}

/// Creates app `name` through `node`, trying again while NATS answers 503 (it elects
/// new leaders after servers die or come back).
async fn app_made_once_accepted(node: &Node, name: &str) {
    let body = json!({"app_name": name, "org_slug": "personal"});
    wait::until(&format!("app {name} made"), SETTLE, async || {
        match node.post("/v1/apps", body.clone()).await {
            (StatusCode::CREATED, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
}
