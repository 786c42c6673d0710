//! Listing machines with Fly's filters, destroyed machines included on request, and
//! the apps list's shape.

mod support;

use edgewake::config::RegionConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

async fn edge_with_two_regions() -> TestEdge {
    TestEdge::start_with(|config| {
        config.regions.push(RegionConfig {
            code: "lhr".into(),
            name: "London".into(),
            latitude: 51.5,
            longitude: -0.1,
        })
    })
    .await
}

/// A machine in `region` with `metadata`, of the app `APP` (which exists).
fn machine<'e>(edge: &'e TestEdge, region: &str, metadata: Value) -> NewMachine<'e> {
    edge.new_machine(APP, RUNTIME_IMAGE)
        .with("region", region)
        .config(|c| c["metadata"] = metadata)
}

/// The ids a listing with `query` returns, sorted.
async fn listed(edge: &TestEdge, query: &str) -> Vec<String> {
    let (status, list) = edge.get(&format!("{}?{query}", machines_path(APP))).await;
    assert_eq!(status, StatusCode::OK, "{query}: {list}");
    let mut ids: Vec<String> = list.as_array().unwrap().iter().map(id_of).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// region, state (comma list or repeated) and metadata.KEY=VALUE filters each keep
/// exactly the machines they match, and combine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_region_state_and_metadata() {
    let edge = edge_with_two_regions().await;
    edge.create_app(APP).await;
    let web = machine(&edge, "ams", json!({"role": "web"}))
        .created()
        .await
        .id;
    let db_lhr = machine(&edge, "lhr", json!({"role": "db"}))
        .started()
        .await
        .id;
    let gold = json!({"role": "db", "tier": "gold"});
    let db_ams = machine(&edge, "ams", gold).started().await.id;
    assert_eq!(listed(&edge, "").await, sorted(&[&web, &db_lhr, &db_ams]));
    assert_eq!(listed(&edge, "region=lhr").await, [db_lhr.as_str()]);
    assert_eq!(listed(&edge, "state=created").await, [web.as_str()]);
    assert_eq!(
        listed(&edge, "state=started").await,
        sorted(&[&db_lhr, &db_ams])
    );
    assert_eq!(listed(&edge, "state=created,started").await.len(), 3);
    assert_eq!(listed(&edge, "state=created&state=started").await.len(), 3);
    assert_eq!(listed(&edge, "state=stopped").await, Vec::<String>::new());
    assert_eq!(
        listed(&edge, "metadata.role=db").await,
        sorted(&[&db_lhr, &db_ams])
    );
    assert_eq!(
        listed(&edge, "metadata.role=db&metadata.tier=gold").await,
        [db_ams.as_str()]
    );
    assert_eq!(
        listed(&edge, "region=ams&metadata.role=db").await,
        [db_ams.as_str()]
    );
    assert_eq!(
        listed(&edge, "metadata.role=cache").await,
        Vec::<String>::new()
    );
    edge.shutdown().await;
}

/// summary=true leaves out config and events but keeps the machine's facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_summary_omits_config_and_events() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let (_, list) = edge
        .get(&format!("{}?summary=true", machines_path(APP)))
        .await;
    let machine = &list[0];
    assert_eq!(machine["id"], id.as_str());
    assert_eq!(machine["state"], "created");
    assert!(machine["instance_id"].is_string() && machine["region"].is_string());
    assert!(
        machine.get("config").is_none() && machine.get("events").is_none(),
        "{machine}"
    );
    let (status, body) = edge
        .get(&format!("{}?summary=perhaps", machines_path(APP)))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    edge.shutdown().await;
}

/// A destroyed machine leaves the list, comes back with include_deleted (state
/// `destroyed`), still after a restart, and a wait for `destroyed` on it answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_machines_listed_with_include_deleted() {
    let edge = TestEdge::start().await;
    let kept = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let gone = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    let (status, _) = edge.delete(&machine_path(APP, &gone, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&edge, "").await, [kept.as_str()]);
    assert_eq!(
        listed(&edge, "include_deleted=true").await,
        sorted(&[&kept, &gone])
    );

    let edge = edge.restart().await;
    assert_eq!(
        listed(&edge, "include_deleted=true&state=destroyed").await,
        [gone.as_str()]
    );
    assert_eq!(listed(&edge, "").await, [kept.as_str()]);
    let (status, body) = edge
        .get(&machine_path(APP, &gone, "/wait?state=destroyed&timeout=1"))
        .await;
    assert_eq!(
        (status, &body["state"]),
        (StatusCode::OK, &json!("destroyed")),
        "{body}"
    );
    let (status, body) = edge.get(&machine_path(APP, &gone, "")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let second = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    assert_eq!(listed(&edge, "").await, sorted(&[&kept, &second]));
    edge.shutdown().await;
}

/// The apps list is Fly's: total_apps and apps[] with id, name, machine_count,
/// volume_count and network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_list_has_fly_shape() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    edge.new_machine(APP, RUNTIME_IMAGE).created().await;
    let (status, list) = edge.get("/v1/apps?org_slug=personal").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total_apps"], 1);
    let app = &list["apps"][0];
    assert_eq!(app["name"], APP);
    assert_eq!(app["machine_count"], 2);
    assert_eq!(
        (&app["volume_count"], &app["network"]),
        (&json!(0), &json!("default"))
    );
    assert!(app["id"].as_str().is_some_and(|id| !id.is_empty()));
    edge.shutdown().await;
}
