//! The OpenAPI document at `/v1/openapi.json`: generated from the handlers, it lists
//! every route the API serves, and every route it lists is served.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

/// Every route of the API, as (method, path): the contract the document must cover.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/apps"),
    ("get", "/v1/apps"),
    ("get", "/v1/apps/{app}"),
    ("delete", "/v1/apps/{app}"),
    ("post", "/v1/apps/{app}/machines"),
    ("get", "/v1/apps/{app}/machines"),
    ("get", "/v1/apps/{app}/machines/{id}"),
    ("post", "/v1/apps/{app}/machines/{id}"),
    ("delete", "/v1/apps/{app}/machines/{id}"),
    ("post", "/v1/apps/{app}/machines/{id}/start"),
    ("post", "/v1/apps/{app}/machines/{id}/stop"),
    ("post", "/v1/apps/{app}/machines/{id}/suspend"),
    ("post", "/v1/apps/{app}/machines/{id}/restart"),
    ("post", "/v1/apps/{app}/machines/{id}/signal"),
    ("post", "/v1/apps/{app}/machines/{id}/cordon"),
    ("post", "/v1/apps/{app}/machines/{id}/uncordon"),
    ("post", "/v1/apps/{app}/machines/{id}/exec"),
    ("get", "/v1/apps/{app}/machines/{id}/wait"),
    ("get", "/v1/apps/{app}/machines/{id}/events"),
    ("post", "/v1/apps/{app}/machines/{id}/lease"),
    ("get", "/v1/apps/{app}/machines/{id}/lease"),
    ("delete", "/v1/apps/{app}/machines/{id}/lease"),
    ("get", "/v1/apps/{app}/machines/{id}/metadata"),
    ("put", "/v1/apps/{app}/machines/{id}/metadata"),
    ("patch", "/v1/apps/{app}/machines/{id}/metadata"),
    ("get", "/v1/apps/{app}/machines/{id}/metadata/{key}"),
    ("post", "/v1/apps/{app}/machines/{id}/metadata/{key}"),
    ("delete", "/v1/apps/{app}/machines/{id}/metadata/{key}"),
    ("get", "/v1/apps/{app}/machines/{id}/logs"),
    ("get", "/v1/apps/{app}/certificates"),
    ("post", "/v1/apps/{app}/certificates/acme"),
    ("post", "/v1/apps/{app}/certificates/custom"),
    ("get", "/v1/apps/{app}/certificates/{hostname}"),
    ("delete", "/v1/apps/{app}/certificates/{hostname}"),
    ("post", "/v1/apps/{app}/certificates/{hostname}/check"),
    ("delete", "/v1/apps/{app}/certificates/{hostname}/acme"),
    ("delete", "/v1/apps/{app}/certificates/{hostname}/custom"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/apps/{app}/machines/{id}/keepawake"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(edge: &TestEdge) -> Value {
    let res = edge
        .client
        .get(edge.api_url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the document needs no token");
    res.json().await.unwrap()
}

/// Every (method, path) the document lists.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect()
}

/// The document is OpenAPI 3 and lists exactly the API's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_lists_every_route() {
    let edge = TestEdge::start().await;
    let doc = document(&edge).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let got = documented(&doc);
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, not expected {extra:?}"
    );
    edge.shutdown().await;
}

/// Every documented route is served: called with an unknown app, each answers the
/// handler's 404 ("Could not find App"), never the router's "no such endpoint" or 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let edge = TestEdge::start().await;
    for (method, path) in documented(&document(&edge).await) {
        let concrete = path
            .replace("{app}", "no-such-app")
            .replace("{id}", "00000000000000")
            .replace("{key}", "k");
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        let res = edge
            .client
            .request(method.clone(), edge.api_url(&concrete))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            body["error"], "no such endpoint",
            "{method} {path} is not routed"
        );
    }
    edge.shutdown().await;
}

/// Bodies and answers come from the Rust types: the machine, event, wait answer and
/// error schemas are there, and wait documents its query parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_has_schemas_and_parameters() {
    let edge = TestEdge::start().await;
    let doc = document(&edge).await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "MachineRecord",
        "MachineEvent",
        "MachineState",
        "WaitResponse",
        "ErrorBody",
        "CreateMachine",
        "UpdateMachine",
        "AppsList",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    let record = &schemas["MachineRecord"]["properties"];
    for field in ["id", "instance_id", "state", "config", "events", "cordoned"] {
        assert!(record.get(field).is_some(), "MachineRecord lacks {field}");
    }
    let wait = &doc["paths"]["/v1/apps/{app}/machines/{id}/wait"]["get"];
    let params: Vec<&str> = wait["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "app",
        "id",
        "state",
        "timeout",
        "instance_id",
        "from_event_id",
    ] {
        assert!(params.contains(&name), "wait lacks {name}: {params:?}");
    }
    assert!(wait["responses"].get("408").is_some());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    edge.shutdown().await;
}

/// Each operation has its own operationId, and Fly's operations have Fly's names
/// (client generators name their methods after them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_ids_are_unique_and_flys() {
    let edge = TestEdge::start().await;
    let doc = document(&edge).await;
    let mut ids = std::collections::BTreeMap::new();
    for (method, path) in documented(&doc) {
        let id = doc["paths"][&path][&method]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_string();
        let earlier = ids.insert(id.clone(), (method.clone(), path.clone()));
        assert!(
            earlier.is_none(),
            "{id} names {earlier:?} and {method} {path}"
        );
    }
    for (id, method, path) in [
        ("Apps_list", "get", "/v1/apps"),
        ("Apps_create", "post", "/v1/apps"),
        ("Apps_show", "get", "/v1/apps/{app}"),
        ("Machines_create", "post", "/v1/apps/{app}/machines"),
        ("Machines_list", "get", "/v1/apps/{app}/machines"),
        ("Machines_update", "post", "/v1/apps/{app}/machines/{id}"),
        ("Machines_wait", "get", "/v1/apps/{app}/machines/{id}/wait"),
        (
            "Machines_create_lease",
            "post",
            "/v1/apps/{app}/machines/{id}/lease",
        ),
        (
            "Machines_update_metadata_put",
            "put",
            "/v1/apps/{app}/machines/{id}/metadata",
        ),
        (
            "Machines_update_metadata",
            "patch",
            "/v1/apps/{app}/machines/{id}/metadata",
        ),
    ] {
        assert_eq!(
            ids.get(id),
            Some(&(method.to_string(), path.to_string())),
            "{id}"
        );
    }
    edge.shutdown().await;
}
