//! What a client can make edgewake hold through the API: many machines (names never
//! run out), and no more than the quotas, the address range and Fly's machine sizes allow.

mod support;

use edgewake::drivers::fake::FakeDriver;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use support::*;

/// Creates in flight at once in the big test: enough to keep the API busy.
const PARALLEL_CREATES: usize = 8;

/// A /18 in 127.0.0.0/8 (16,382 machine addresses) that other tests are unlikely to use.
fn random_loopback_18() -> String {
    let [a, b] = edgewake::ids::random_bytes::<2>();
    format!("127.{}.{}.0/18", 64 + a % 180, (b % 4) * 64)
}

/// 10,000 machines created without a name in one app all succeed, each with its own
/// generated name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unnamed_machines_in_one_app() {
    let edge = TestEdge::start_with_driver_and(Arc::new(FakeDriver::new()), |config| {
        config.machines.private_ip_range = random_loopback_18().parse().unwrap();
    })
    .await;
    edge.create_app(APP).await;
    let path = format!("/v1/apps/{APP}/machines");
    let creates = (0..10_000).map(|_| {
        let body = json!({"config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
        edge.post(&path, body)
    });
    let answers: Vec<_> = futures_util::stream::iter(creates)
        .buffer_unordered(PARALLEL_CREATES)
        .collect()
        .await;
    let mut names = HashSet::new();
    for (status, machine) in answers {
        assert_eq!(status, StatusCode::OK, "{machine}");
        names.insert(machine["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 10_000, "every name is its own");
    edge.shutdown().await;
}

/// The quotas on apps and on machines per app answer 403 past them, and give room back
/// when a machine is destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_bound_apps_and_machines() {
    let edge = TestEdge::start_with(|config| {
        config.limits.apps = 2;
        config.limits.machines_per_app = 2;
    })
    .await;
    edge.create_app(APP).await;
    edge.create_app("second").await;
    let third = json!({"app_name": "third", "org_slug": "personal"});
    let (status, body) = edge.post("/v1/apps", third).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("limits.apps"),
        "{body}"
    );

    let first = edge.new_machine(APP, RUNTIME_IMAGE).created().await;
    edge.new_machine(APP, RUNTIME_IMAGE).created().await;
    let body = json!({"config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let path = format!("/v1/apps/{APP}/machines");
    let (status, answer) = edge.post(&path, body.clone()).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("machines_per_app")
    );
    let (status, _) = edge.delete(&machine_path(APP, &first.id, "")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = edge.post(&path, body).await;
    assert_eq!(status, StatusCode::OK, "room again: {answer}");
    edge.shutdown().await;
}

/// With every private address taken, a create answers Fly's 412
/// `insufficient_capacity`, not a 500, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_address_left_is_insufficient_capacity() {
    let [a, b] = edgewake::ids::random_bytes::<2>();
    let range = format!("127.{}.{}.0/29", 64 + a % 180, b);
    let edge = TestEdge::start_with(|config| {
        config.machines.private_ip_range = range.parse().unwrap();
    })
    .await;
    edge.create_app(APP).await;
    // A /29 has 8 addresses: the network, the gateway, the broadcast and 5 machines.
    for _ in 0..5 {
        edge.new_machine(APP, RUNTIME_IMAGE).created().await;
    }
    let body = json!({"config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let (status, answer) = edge.post(&format!("/v1/apps/{APP}/machines"), body).await;
    assert_error(status, &answer, StatusCode::PRECONDITION_FAILED);
    assert_eq!(answer["status"], "insufficient_capacity", "{answer}");
    let (_, machines) = edge.get(&format!("/v1/apps/{APP}/machines")).await;
    assert_eq!(machines.as_array().unwrap().len(), 5);
    edge.shutdown().await;
}

/// A machine bigger than Fly's largest (16 CPUs, 128 GiB) is refused with a 400 naming
/// the field, whatever number is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sizes_are_bounded() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let path = format!("/v1/apps/{APP}/machines");
    for (guest, field) in [
        (json!({"cpus": 17}), "guest.cpus"),
        (json!({"cpus": 4294967295u64}), "guest.cpus"),
        (json!({"memory_mb": 131_073}), "guest.memory_mb"),
        (json!({"memory_mb": u64::MAX}), "guest.memory_mb"),
    ] {
        let mut config = seed_config(RUNTIME_IMAGE);
        config["guest"] = guest.clone();
        let body = json!({"config": config, "skip_launch": true});
        let (status, answer) = edge.post(&path, body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{guest}: {answer}"
        );
    }
    let mut config = seed_config(RUNTIME_IMAGE);
    config["guest"] = json!({"cpus": 16, "memory_mb": 131_072});
    let body = json!({"config": config, "skip_launch": true});
    let (status, answer) = edge.post(&path, body).await;
    assert_eq!(status, StatusCode::OK, "Fly's largest is fine: {answer}");
    edge.shutdown().await;
}
