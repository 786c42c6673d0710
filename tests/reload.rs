//! `Running::reload` on a live edge: live settings (domains, regions, limits) take effect
//! for the next request, settings bound at start are kept and named, and a reload that
//! cannot be applied (a geo file that is no database) changes nothing.

mod support;

use edgewake::config::RegionConfig;
use edgewake::server::ReloadError;
use reqwest::StatusCode;
use serde_json::json;
use support::*;

/// A request to `<app>.<domain>`.
async fn status_at(edge: &TestEdge, host: &str) -> StatusCode {
    edge.client
        .get(format!("http://{}/", edge.running.http_addr))
        .header("host", host)
        .send()
        .await
        .expect("edge answers")
        .status()
}

/// A new domain routes at once, a new region takes machines, a changed listener is
/// named and kept; a bad geo database is refused and leaves everything as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_settings_change_and_fixed_ones_are_kept() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).started().await;
    let other_domain = format!("{APP}.apps.example");
    assert_eq!(status_at(&edge, &other_domain).await, StatusCode::NOT_FOUND);

    let mut config = edge.running.config();
    config.edge.domains.push("apps.example".into());
    config.regions.push(RegionConfig {
        code: "lhr".into(),
        name: "London".into(),
        latitude: 51.5,
        longitude: -0.1,
    });
    config.edge.http = "127.0.0.1:1".parse().unwrap();
    let reloaded = edge.running.reload(config.clone()).unwrap();
    assert_eq!(reloaded.kept, ["edge.http"]);
    assert!(
        reloaded
            .changed
            .iter()
            .any(|c| c.starts_with("edge.domains"))
    );
    assert_eq!(status_at(&edge, &other_domain).await, StatusCode::OK);
    let body = json!({"region": "lhr", "config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let (status, machine) = edge.post(&machines_path(APP), body).await;
    assert_eq!(status, StatusCode::OK, "{machine}");
    assert_ne!(edge.running.config().edge.http, config.edge.http);

    let not_a_database = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_database.path(), "not a database").unwrap();
    let mut bad = edge.running.config();
    bad.edge.domains = vec!["localhost".into()];
    bad.geo.ipv4_db = Some(not_a_database.path().to_path_buf());
    let refused = edge.running.reload(bad).unwrap_err();
    assert!(matches!(refused, ReloadError::Geo(_)), "{refused}");
    assert_eq!(
        status_at(&edge, &other_domain).await,
        StatusCode::OK,
        "unchanged"
    );
    edge.shutdown().await;
}
