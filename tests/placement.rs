//! Where a request goes: the nearest region with a machine (by a geo database made
//! here, mapping loopback source ranges to cities), least-loaded machines, fallback
//! when a wake fails, client addresses from trusted proxies, and routing headers.

mod support;

use edgewake::config::{Config, RegionConfig};
use reqwest::StatusCode;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use support::geo::{PARIS, SYDNEY, write_geo_db};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn with_regions(c: &mut Config) {
    let region = |code: &str, (latitude, longitude): (f64, f64)| RegionConfig {
        code: code.into(),
        name: String::new(),
        latitude,
        longitude,
    };
    c.regions.push(region("syd", SYDNEY));
    c.regions.push(region("cdg", PARIS));
    let db = c.data_dir.join("geo.mmdb");
    std::fs::create_dir_all(&c.data_dir).unwrap();
    write_geo_db(&db);
    c.geo.ipv4_db = Some(db);
}

/// A machine of `image` in `region`, of the app `APP` (which exists).
fn machine_in<'e>(edge: &'e TestEdge, region: &str, image: &str) -> NewMachine<'e> {
    edge.new_machine(APP, image).with("region", region)
}

/// A request from a client bound to `source`, with extra headers.
async fn send_from(edge: &TestEdge, source: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut req = client
        .get(format!("http://{}/", edge.running.http_addr))
        .header("host", format!("{APP}.localhost"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

/// A request from a client bound to `source`, with extra headers; returns the region
/// that served it and the request as the machine saw it (the runtime's answer).
async fn seen_from(
    edge: &TestEdge,
    source: &str,
    headers: &[(&str, &str)],
) -> (String, serde_json::Value) {
    let res = send_from(edge, source, headers).await;
    assert_eq!(res.status(), StatusCode::OK);
    let region = res.headers()["edgewake-region"]
        .to_str()
        .unwrap()
        .to_string();
    (region, res.json().await.unwrap())
}

/// A request from a client bound to `source`, with extra headers; returns the status and
/// the region and machine that served it.
async fn from(
    edge: &TestEdge,
    source: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let res = send_from(edge, source, headers).await;
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        res.status(),
        header("edgewake-region"),
        header("edgewake-machine"),
    )
}

/// Clients in Sydney and Paris (by their source address) are served by the machine in
/// their own region — real sockets, no headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_nearest_region() {
    let edge = TestEdge::start_with(with_regions).await;
    edge.create_app(APP).await;
    let syd = machine_in(&edge, "syd", RUNTIME_IMAGE).started().await.id;
    let cdg = machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await.id;
    assert_eq!(
        from(&edge, "127.1.0.9", &[]).await,
        (StatusCode::OK, "syd".into(), syd)
    );
    assert_eq!(
        from(&edge, "127.2.0.9", &[]).await,
        (StatusCode::OK, "cdg".into(), cdg)
    );
    edge.shutdown().await;
}

/// The nearest region's stopped machine is woken rather than a farther started one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_stopped_machine_is_woken() {
    let edge = TestEdge::start_with(with_regions).await;
    edge.create_app(APP).await;
    let syd = machine_in(&edge, "syd", RUNTIME_IMAGE).created().await.id;
    machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await;
    assert_eq!(
        from(&edge, "127.1.0.9", &[]).await,
        (StatusCode::OK, "syd".into(), syd)
    );
    edge.shutdown().await;
}

/// When the nearest region's machine fails to start, the next region serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_wake_falls_back_to_the_next_region() {
    let edge = TestEdge::start_with(with_regions).await;
    edge.create_app(APP).await;
    machine_in(&edge, "syd", CRASH_IMAGE).created().await;
    let cdg = machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await.id;
    assert_eq!(
        from(&edge, "127.1.0.9", &[]).await,
        (StatusCode::OK, "cdg".into(), cdg)
    );
    edge.shutdown().await;
}

/// Of two started machines with 5 and 1 requests in flight, the next request goes to
/// the one with 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_machine_gets_the_request() {
    let edge = TestEdge::start().await;
    let busy = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let light = edge.new_machine(APP, RUNTIME_IMAGE).started().await.id;
    // An event stream is in flight from its first event until its last (a minute on).
    let mut streams = Vec::new();
    for id in [&busy, &busy, &busy, &busy, &busy, &light] {
        let req = edge.request_to(APP, "/?stream=2&interval=60000");
        let res = req
            .header("fly-force-instance-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["edgewake-machine"], id.as_str());
        streams.push(res);
    }
    assert_eq!(
        from(&edge, "127.0.0.1", &[]).await,
        (StatusCode::OK, "ams".into(), light)
    );
    drop(streams);
    edge.shutdown().await;
}

/// Routing headers: forced and preferred regions and instances (a machine standing in
/// for an unavailable preferred one is told so), and a forced instance that does not
/// exist is a 404, never a silent reroute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_headers_do_what_they_say() {
    let edge = TestEdge::start_with(with_regions).await;
    edge.create_app(APP).await;
    let syd = machine_in(&edge, "syd", RUNTIME_IMAGE).started().await.id;
    let cdg = machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await.id;
    let sydney = "127.1.0.9";
    assert_eq!(
        from(&edge, sydney, &[("fly-force-region", "cdg")]).await.2,
        cdg
    );
    assert_eq!(
        from(&edge, sydney, &[("fly-prefer-region", "cdg")]).await.2,
        cdg
    );
    assert_eq!(
        from(&edge, sydney, &[("fly-force-instance-id", &cdg)])
            .await
            .2,
        cdg
    );
    assert_eq!(
        from(&edge, sydney, &[("fly-prefer-instance-id", &cdg)])
            .await
            .2,
        cdg
    );
    let (_, seen) = seen_from(&edge, sydney, &[("fly-prefer-instance-id", &cdg)]).await;
    assert_eq!(seen["machine_id"], cdg.as_str());
    assert!(
        seen["headers"]["fly-preferred-instance-unavailable"].is_null(),
        "the preferred machine served: {seen}"
    );
    let nobody = [("fly-prefer-instance-id", "00000000000000")];
    let (_, seen) = seen_from(&edge, sydney, &nobody).await;
    assert_eq!(
        seen["machine_id"],
        syd.as_str(),
        "the nearest serves instead"
    );
    assert_eq!(
        seen["headers"]["fly-preferred-instance-unavailable"], "true",
        "and is told the preferred one could not: {seen}"
    );
    let (status, _, _) = from(
        &edge,
        sydney,
        &[("fly-force-instance-id", "00000000000000")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = from(&edge, sydney, &[("fly-force-region", "nrt")]).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no machine in a forced region: no fallback"
    );
    edge.shutdown().await;
}

/// Sends `preamble` and a GET in one write on a raw connection, and returns the
/// answer, lowercased. One write: an edge that refuses the preamble answers and closes
/// at once, and a second write could find the connection gone (an error, not an answer).
/// A reset after the answer still leaves the answer read.
async fn raw_request(addr: SocketAddr, preamble: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = preamble.to_vec();
    bytes.extend(
        format!("GET / HTTP/1.1\r\nHost: {APP}.localhost\r\nConnection: close\r\n\r\n").bytes(),
    );
    tcp.write_all(&bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOOT, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the edge neither answered nor closed");
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

/// A trusted peer's PROXY protocol header (v1 and v2) names the client, whose region
/// then serves and whom the machine is told of; from an untrusted peer the same header
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_trusted_peers_only() {
    let trusting = |trusted: &'static str| {
        move |c: &mut Config| {
            with_regions(c);
            c.edge.http_proxy_protocol = true;
            c.edge.trusted_proxies = vec![trusted.parse().unwrap()];
        }
    };
    let edge = TestEdge::start_with(trusting("127.0.0.0/8")).await;
    edge.create_app(APP).await;
    machine_in(&edge, "syd", RUNTIME_IMAGE).started().await;
    machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await;
    let v1 = b"PROXY TCP4 203.0.113.5 192.0.2.1 40000 80\r\n";
    let answer = raw_request(edge.running.http_addr, v1).await;
    assert!(answer.contains("edgewake-region: syd"), "{answer}");
    assert!(
        answer.contains(r#""fly-client-ip":"203.0.113.5""#),
        "the machine is told the client the header named: {answer}"
    );
    let v2 = edgewake::proxy_protocol::v2_header(
        "198.51.100.5:40000".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    assert!(
        raw_request(edge.running.http_addr, &v2)
            .await
            .contains("edgewake-region: cdg")
    );
    edge.shutdown().await;

    let edge = TestEdge::start_with(trusting("10.0.0.0/8")).await;
    let answer = raw_request(edge.running.http_addr, v1).await;
    assert!(
        answer.starts_with("http/1.1 400"),
        "an untrusted header is a bad request: {answer}"
    );
    edge.shutdown().await;
}

/// A trusted peer's X-Forwarded-For names the client: its region serves, and the
/// machine gets it as `Fly-Client-IP`, with the peer appended to X-Forwarded-For. From
/// an untrusted peer the same header chooses nothing: the peer is the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_forwarded_for_names_the_client() {
    let trusting = |trusted: &'static str| {
        move |c: &mut Config| {
            with_regions(c);
            c.edge.trusted_proxies = vec![trusted.parse().unwrap()];
        }
    };
    // 127.0.0.1 is in no city of the database: on its own it is placed at the edge's
    // region (ams), whose nearest machine is in Paris.
    let sydney_client = [("x-forwarded-for", "203.0.113.5")];
    for (trusted, region, client) in [
        ("127.0.0.0/8", "syd", "203.0.113.5"),
        ("10.0.0.0/8", "cdg", "127.0.0.1"),
    ] {
        let edge = TestEdge::start_with(trusting(trusted)).await;
        edge.create_app(APP).await;
        machine_in(&edge, "syd", RUNTIME_IMAGE).started().await;
        machine_in(&edge, "cdg", RUNTIME_IMAGE).started().await;
        let (served_in, seen) = seen_from(&edge, "127.0.0.1", &sydney_client).await;
        assert_eq!(served_in, region, "trusting {trusted}");
        assert_eq!(
            seen["headers"]["fly-client-ip"], client,
            "trusting {trusted}"
        );
        assert_eq!(
            seen["headers"]["x-forwarded-for"], "203.0.113.5, 127.0.0.1",
            "trusting {trusted}"
        );
        edge.shutdown().await;
    }
}

/// A request queued at the hard limit that finds no room within `edge.queue_timeout`
/// gets 503 with Retry-After, no sooner; the request in flight is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_is_a_503_with_retry_after() {
    const QUEUE_TIMEOUT: Duration = Duration::from_millis(400);
    let edge = TestEdge::start_with(|c| c.edge.queue_timeout = QUEUE_TIMEOUT).await;
    let limits = json!({"type": "requests", "soft_limit": 1, "hard_limit": 1});
    edge.app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["concurrency"] = limits)
        .started()
        .await;
    // In flight from its first event until its last, a minute later.
    let mut busy = edge.request(APP, "/?stream=2&interval=60000").await;
    assert_eq!(busy.status(), StatusCode::OK);
    busy.chunk().await.unwrap().expect("the first event");

    let began = std::time::Instant::now();
    let refused = edge.request(APP, "/").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        began.elapsed() >= QUEUE_TIMEOUT,
        "refused only after waiting in the queue: {:?}",
        began.elapsed()
    );
    drop(busy);
    edge.shutdown().await;
}

/// With a hard limit of 2 and room for 2 in the queue, 5 concurrent slow requests: 2
/// run, 2 wait and then run, and the fifth gets 503 with Retry-After at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limit_queues_then_refuses() {
    let edge = TestEdge::start_with(|c| {
        c.edge.max_queued = 2;
        c.edge.queue_timeout = Duration::from_secs(10);
    })
    .await;
    let limits = json!({"type": "requests", "soft_limit": 1, "hard_limit": 2});
    edge.app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["concurrency"] = limits)
        .started()
        .await;

    let began = std::time::Instant::now();
    let requests: Vec<_> = (0..5)
        // Long enough that all five are in before the first two finish, even on a
        // loaded machine.
        .map(|_| spawn_request(edge.request_to(APP, "/?sleep=1500")))
        .collect();
    let mut outcomes = Vec::new();
    for request in requests {
        let answer = request.await.unwrap();
        outcomes.push((
            answer.status,
            answer.headers.contains_key("retry-after"),
            answer.arrived - began,
        ));
    }
    let served: Vec<_> = outcomes
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .collect();
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!((served.len(), refused.len()), (4, 1), "{outcomes:?}");
    assert!(refused[0].1, "503 carries Retry-After");
    let waited = served
        .iter()
        .filter(|(_, _, took)| *took >= Duration::from_millis(3000))
        .count();
    assert_eq!(
        waited, 2,
        "two waited for the first two to finish: {outcomes:?}"
    );
    edge.shutdown().await;
}
