//! Waking early: a TLS ClientHello naming an app that asks for it begins the wake
//! before any request (the handshake alone starts the machine); an app that does not
//! ask is woken by requests only.

mod support;

use serde_json::json;
use support::*;

/// A handshake for `<app>.localhost` with no request after it.
async fn handshake_only(edge: &TestEdge, app: &str) {
    let name = format!("{app}.localhost");
    let stream = tls::connect(edge.running.https_addr, &name, tls::trusting_anything())
        .await
        .expect("handshake");
    drop(stream);
}

/// The handshake wakes an app with `wake_early`, and leaves one without it asleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_wakes_apps_that_ask() {
    let edge = TestEdge::start().await;
    let early = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["http_options"] = json!({"wake_early": true}))
        .created()
        .await
        .id;
    edge.create_app("late").await;
    let late = edge.new_machine("late", RUNTIME_IMAGE).created().await.id;

    handshake_only(&edge, "late").await;
    handshake_only(&edge, APP).await;
    edge.wait_for_state(APP, &early, "started", BOOT).await;
    let machine = edge.machine(APP, &early).await;
    assert_eq!(count_events(&machine, "start"), 1);
    // Checked after the early app started: the late one's handshake came first.
    assert_eq!(edge.machine("late", &late).await["state"], "created");
    edge.shutdown().await;
}
