//! Around sleep: browsers get a wake page while API clients are held; monitors and
//! crawlers are answered by the edge without a wake and do not keep a machine awake; a
//! machine keeps itself awake (a header, or a call from inside it); a minimum of
//! running machines per region is never stopped.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const CHROME_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const MONITOR: &str = "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)";

/// The time of the machine's newest event of `kind`, in ms since the epoch.
fn event_time(machine: &Value, kind: &str) -> u64 {
    machine["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {machine}"))["timestamp"]
        .as_u64()
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A browser navigating to a sleeping app that asks for the wake page gets it at once
/// (503, Retry-After, not cached) while its machine starts; a curl JSON request is held
/// and served; the page's reload lands on the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_the_page_api_clients_are_held() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(SLOW_BOOT_IMAGE)
        .config(|c| c["services"][0]["http_options"] = json!({"wake_page": true}))
        .created()
        .await
        .id;
    let page = edge
        .request_to(APP, "/dashboard")
        .header("accept", CHROME_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(page.headers()["retry-after"], "2");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("{APP} is starting")), "{html}");
    assert!(html.contains("location.reload()"), "{html}");
    // The page began the wake: its start runs in a task of its own, so the state is
    // polled for rather than read once.
    wait::until_true("the page's wake to begin", BOOT, async || {
        edge.machine(APP, &id).await["state"] != "created"
    })
    .await;

    let held = edge
        .request_to(APP, "/api")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    assert_eq!(held.headers()["edgewake-machine"], id.as_str());

    let reload = edge
        .request_to(APP, "/dashboard")
        .header("accept", CHROME_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), StatusCode::OK);
    let body: Value = reload.json().await.unwrap();
    assert_eq!(
        (body["machine_id"].as_str(), body["path"].as_str()),
        (Some(id.as_str()), Some("/dashboard"))
    );
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "start"), 1);
    edge.shutdown().await;
}

/// A `HEAD /healthz` from a monitor's user agent gets the sleeping answer from the edge
/// (503, Retry-After, `edgewake-asleep`) and the machine is not woken; so does a path
/// the app lists, from anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_get_the_sleeping_answer_without_a_wake() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| {
            c["services"][0]["http_options"] = json!({"no_wake": {"paths": ["/robots.txt"]}})
        })
        .created()
        .await
        .id;
    let url = format!("http://{}/healthz", edge.running.http_addr);
    let monitor = edge
        .client
        .head(&url)
        .header("host", format!("{APP}.localhost"))
        .header("user-agent", MONITOR);
    let res = monitor.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["edgewake-asleep"], "true");
    assert!(res.headers().contains_key("retry-after"));
    let robots = edge.request(APP, "/robots.txt").await;
    assert_eq!(robots.headers()["edgewake-asleep"], "true");
    let machine = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "created");
    assert_eq!(count_events(&machine, "start"), 0);
    edge.shutdown().await;
}

/// A monitor's requests every 100 ms reach the running machine but do not keep it
/// awake: it is stopped at its idle timeout all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_requests_do_not_keep_a_machine_awake() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(500)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    let mut served_while_up = 0;
    let stopped = wait::until("the machine to stop under a monitor", BOOT, async || {
        let res = edge
            .request_to(APP, "/status")
            .header("user-agent", MONITOR)
            .send()
            .await
            .unwrap();
        if res.headers().get("edgewake-machine").is_some() {
            served_while_up += 1;
        }
        // The monitor's pace: one request every 100 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let machine = edge.machine(APP, &id).await;
        if machine["state"] == "stopped" {
            Ok(machine)
        } else {
            Err(machine)
        }
    })
    .await;
    assert!(
        served_while_up >= 2,
        "the monitor reached the running machine"
    );
    assert_eq!(stopped["events"][0]["request"]["reason"], "idle");
    edge.shutdown().await;
}

/// A machine answering with `edgewake-keep-awake: 2s` outlives a 300 ms idle timeout
/// and is stopped after it; the client never sees the header; the period is an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_awake_header_holds_off_the_idle_stop() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(300)).await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let asked = now_ms();
    let res = edge
        .request(APP, "/busy?header=edgewake-keep-awake:2s")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("edgewake-keep-awake").is_none());
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    let up_for = event_time(&stopped, "stop") - asked;
    assert!(up_for >= 2000, "stopped {up_for} ms after the keep-awake");
    let kept = stopped["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "keep_awake")
        .unwrap();
    assert_eq!(kept["request"]["via"], "header", "{kept}");
    edge.shutdown().await;
}

/// The machine's own code calls `keepawake` with the token in its environment, and the
/// reaper leaves it running that long, never longer than the operator's bound; a wrong
/// token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_awake_call_from_inside_the_machine() {
    let edge = TestEdge::start_with(|c| {
        c.edge.idle_timeout = Duration::from_millis(300);
        c.wake.keep_awake_max = Duration::from_secs(2);
    })
    .await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let asked = now_ms();
    let res = edge.request(APP, "/keepawake?for=1h").await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
    let for_ms = body["for_ms"].as_u64().unwrap();
    assert!(
        (1500..=2000).contains(&for_ms),
        "1h asked, 2s allowed: {body}"
    );
    let stopped = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    let up_for = event_time(&stopped, "stop") - asked;
    assert!(up_for >= 2000, "stopped {up_for} ms after the keep-awake");

    let path = machine_path(APP, &id, "/keepawake");
    let wrong = edge
        .client
        .post(edge.api_url(&path))
        .bearer_auth("not-the-token")
        .json(&json!({"for": "1m"}));
    let (status, body) = answer(wrong).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    edge.shutdown().await;
}

/// With `min_machines_running = 1`, of two idle machines in a region one is stopped
/// and the other keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_machines_running_keeps_one_of_two() {
    let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_millis(300)).await;
    let keep_one = |c: &mut Value| c["services"][0]["min_machines_running"] = json!(1);
    let a = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(keep_one)
        .started()
        .await
        .id;
    let b = edge
        .new_machine(APP, RUNTIME_IMAGE)
        .config(keep_one)
        .started()
        .await
        .id;
    let states = async || {
        let a = edge.machine(APP, &a).await["state"].clone();
        let b = edge.machine(APP, &b).await["state"].clone();
        (a, b)
    };
    wait::until_true("one machine to stop", BOOT, async || {
        let (a, b) = states().await;
        a == "stopped" || b == "stopped"
    })
    .await;
    // Many idle timeouts and reaper passes later, one still runs.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (a, b) = states().await;
        let running = [&a, &b].iter().filter(|s| **s == "started").count();
        assert_eq!(running, 1, "{a} {b}");
    }
    edge.shutdown().await;
}
