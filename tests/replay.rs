//! fly-replay: a machine's `fly-replay` answer has the edge send the request again
//! where it points (a region, an instance, another app), body included when it was
//! small enough to keep; otherwise the client gets a 502.

mod support;

use edgewake::config::RegionConfig;
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

async fn edge_with_sydney() -> TestEdge {
    TestEdge::start_with(|c| {
        c.regions.push(RegionConfig {
            code: "syd".into(),
            name: "Sydney".into(),
            latitude: -33.87,
            longitude: 151.21,
        });
        c.replay.max_body = 1024;
    })
    .await
}

/// A machine in ams answering `fly-replay: region=syd` has the request answered by the
/// (sleeping, so woken) machine in syd, which sees where it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_another_region() {
    let edge = edge_with_sydney().await;
    let router = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let sydney = edge
        .new_machine(APP, RUNTIME_IMAGE)
        .with("region", "syd")
        .created()
        .await
        .id;

    let res = edge.request(APP, "/orders?replay=region%3Dsyd").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["edgewake-machine"], sydney.as_str());
    assert_eq!(res.headers()["edgewake-region"], "syd");
    assert!(res.headers().get("fly-replay").is_none());
    let body: Value = res.json().await.unwrap();
    let src = body["headers"]["fly-replay-src"].as_str().unwrap();
    assert!(
        src.starts_with(&format!("instance={router};region=ams;t=")),
        "{src}"
    );
    assert_eq!(body["path"], "/orders?replay=region%3Dsyd");
    edge.shutdown().await;
}

/// A replayed POST carries its body when it was kept (under `replay.max_body`); a larger
/// one cannot be replayed and the client gets a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_bodies_are_bounded() {
    let edge = edge_with_sydney().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let sydney = edge
        .new_machine(APP, RUNTIME_IMAGE)
        .with("region", "syd")
        .started()
        .await
        .id;
    let post = |body: Vec<u8>| {
        edge.client
            .post(format!(
                "http://{}/upload?replay=region%3Dsyd",
                edge.running.http_addr
            ))
            .header("host", format!("{APP}.localhost"))
            .body(body)
    };
    let res = post(vec![b'x'; 1000]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["edgewake-machine"], sydney.as_str());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["body_bytes"], 1000);

    let res = post(vec![b'x'; 4000]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(res.text().await.unwrap().contains("too large to keep"));
    edge.shutdown().await;
}

/// `fly-replay: app=other` sends the request to another app's machine; a machine that
/// replays to itself for ever is cut off after `replay.max_hops` with a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_another_app_and_hop_limit() {
    let edge = edge_with_sydney().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    edge.create_app("other").await;
    let other = edge.new_machine("other", RUNTIME_IMAGE).started().await.id;
    let res = edge.request(APP, "/x?replay=app%3Dother").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["edgewake-machine"], other.as_str());

    // `?header=` answers fly-replay even to replayed requests: a loop.
    let res = edge
        .request(
            APP,
            "/loop?header=fly-replay:elsewhere%3Dfalse%3Bregion%3Dams",
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(res.text().await.unwrap().contains("fly-replay hops"));
    edge.shutdown().await;
}

/// Kept bodies share a budget: a body that fits `max_body` but not what is left of the
/// budget is not kept, so its replay is a 502 rather than more memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_budget_bounds_kept_bodies() {
    let edge = TestEdge::start_with(|c| {
        c.replay.max_body = 1024;
        c.replay.budget = 500;
    })
    .await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let res = edge
        .client
        .post(format!(
            "http://{}/x?replay=elsewhere%3Dtrue",
            edge.running.http_addr
        ))
        .header("host", format!("{APP}.localhost"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    edge.shutdown().await;
}
