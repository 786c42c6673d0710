//! What the operator and the client see: `/metrics` in Prometheus' text format with a
//! cold-start histogram, `/healthz` and `/readyz` without a token, `edgewake-wake` and
//! `Server-Timing` on woken answers only, and the log as JSON lines with access lines.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// One sample of Prometheus' text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus' text format (0.0.4) strictly: every line is a comment naming a
/// family's HELP or TYPE, or a sample `name{label="value",…} number`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            if kind == "TYPE" {
                let kind = comment.rsplit(' ').next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner
                .find('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line}"));
            for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                labels.insert(
                    key.to_string(),
                    value.unwrap_or_else(|| panic!("{line}")).to_string(),
                );
            }
            rest = &inner[close + 1..];
        }
        let value = rest
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .value
}

/// After one woken request, `/metrics` (no token) parses as Prometheus text and its
/// cold-start histogram counts exactly one wake; the request is counted by app, status
/// class and region; `/healthz` and `/readyz` answer without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_one_cold_start() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    assert_eq!(edge.request(APP, "/warm").await.status(), StatusCode::OK);

    // A request is counted as its task finishes, which may be just after the client
    // has read the last byte of its answer: the scrape waits for both requests.
    let ok = [("app", APP), ("status", "2xx"), ("region", "ams")];
    let samples = wait::until(
        "both requests counted",
        Duration::from_secs(5),
        async || {
            let samples = scrape_metrics(&edge).await;
            let counted = value(&samples, "edgewake_requests_total", &ok);
            let in_flight = value(&samples, "edgewake_in_flight_requests", &[]);
            match (counted, in_flight) {
                (2.0, 0.0) => Ok(samples),
                _ => Err(format!("{counted} counted, {in_flight} in flight")),
            }
        },
    )
    .await;
    let app = [("app", APP)];
    assert_eq!(
        value(&samples, "edgewake_cold_start_seconds_count", &app),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "edgewake_cold_start_seconds_bucket",
            &[("app", APP), ("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "edgewake_requests_total", &ok), 2.0);
    assert_eq!(
        value(&samples, "edgewake_request_duration_seconds_count", &app),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "edgewake_wakes_total",
            &[("app", APP), ("reason", "request")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "edgewake_machines", &[("state", "started")]),
        1.0
    );
    assert_eq!(value(&samples, "edgewake_in_flight_requests", &[]), 0.0);

    for path in ["/healthz", "/readyz"] {
        let res = edge.client.get(edge.api_url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    edge.shutdown().await;
}

/// `/metrics` in Prometheus' text format, parsed.
async fn scrape_metrics(edge: &TestEdge) -> Vec<Sample> {
    let url = edge.api_url("/metrics");
    let res = edge.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&res.text().await.unwrap())
}

/// Only a request that waited for its machine to start carries `edgewake-wake` and a
/// `Server-Timing` entry with the same figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_header_only_on_woken_requests() {
    let edge = TestEdge::start().await;
    edge.app_with_machine(SLOW_BOOT_IMAGE).created().await;
    let woken = edge.request(APP, "/").await;
    let ms: u64 = woken.headers()["edgewake-wake"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 300, "the slow boot took 300 ms, the header says {ms}");
    let timing = woken.headers()["server-timing"].to_str().unwrap();
    assert!(timing.starts_with(&format!("wake;dur={ms}")), "{timing}");
    let warm = edge.request(APP, "/").await;
    assert_eq!(warm.status(), StatusCode::OK);
    assert!(warm.headers().get("edgewake-wake").is_none());
    assert!(warm.headers().get("server-timing").is_none());
    edge.shutdown().await;
}

/// With `log.format = "json"` and `log.access = true`, every line edgewake logs is a
/// JSON object; a request gets an access line naming its app, machine, region, status,
/// bytes, duration and wake; the wake has its own line with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_with_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let more = "[log]\nformat = \"json\"\naccess = true\n";
    let process = EdgewakeProcess::spawn_with(dir.path(), more, "info").await;
    let client = reqwest::Client::new();
    let api = format!("http://{}", process.api);
    let create = |path: &str, body: Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
    };
    let app = serde_json::json!({"app_name": APP, "org_slug": "personal"});
    assert_eq!(
        create("/v1/apps", app).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    let machine = serde_json::json!({"config": seed_config(RUNTIME_IMAGE), "skip_launch": true});
    let (status, machine) = answer(create(&machines_path(APP), machine)).await;
    assert_eq!(status, StatusCode::OK);
    let id = id_of(&machine);
    let res = client
        .get(format!("http://{}/hello?secret=1", process.http))
        .header("host", format!("{APP}.localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap().len() as u64;
    process
        .wait_for_log("\"target\":\"edgewake::access\"")
        .await;

    let lines: Vec<Value> = process
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "edgewake::access")
        .unwrap();
    assert_eq!(access["app"], APP, "{access}");
    assert_eq!(access["machine"], id.as_str());
    assert_eq!(access["region"], "ams");
    assert_eq!(access["status"], 200);
    assert_eq!(access["path"], "/hello", "no query in the log: {access}");
    assert_eq!(access["bytes"], bytes);
    assert_eq!(access["woke"], true);
    assert!(access["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(access["request_id"].as_str().unwrap().ends_with("-ams"));
    let wake = lines.iter().find(|l| l["reason"] == "request").unwrap();
    assert_eq!(wake["machine"], id.as_str(), "{wake}");
    assert!(wake["ms"].as_u64().is_some(), "{wake}");
    assert!(
        !process.log().contains('\u{1b}'),
        "no colour codes off a terminal"
    );
}
