//! `GET …/machines/{id}/logs`: the machine's captured output, whole or followed.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::*;

/// The logs hold what the machine printed; `offset` skips what was already read, and
/// an offset past the end (up to u64::MAX) is simply nothing yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_the_machine_output() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let (status, body) = edge.get(&machine_path(APP, &id, "/logs")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("")),
        "never started: no output"
    );

    edge.post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    let (status, text) = edge.get(&machine_path(APP, &id, "/logs")).await;
    let text = text.as_str().unwrap().to_string();
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("edgewake-functions listening on"), "{text:?}");
    let rest = machine_path(APP, &id, &format!("/logs?offset={}", text.len()));
    assert_eq!(edge.get(&rest).await.1, json!(""));
    for offset in [text.len() as u64 + 1_000_000, i64::MAX as u64 + 1, u64::MAX] {
        let past = machine_path(APP, &id, &format!("/logs?offset={offset}"));
        let (status, body) = edge.get(&past).await;
        assert_eq!((status, body), (StatusCode::OK, json!("")), "{offset}");
    }
    let (status, body) = edge
        .get(&machine_path(APP, "00000000000000", "/logs"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// With follow=true new output arrives on the open answer (a restart prints again),
/// and the answer ends when the machine is destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_stream_new_output_until_destroyed() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut res = follow(&edge, &id).await;
    let mut seen = String::new();
    let mut read_until = async |needle_count: usize, seen: &mut String| {
        while seen.matches("listening on").count() < needle_count {
            let chunk = tokio::time::timeout(BOOT, res.chunk())
                .await
                .expect("output in time");
            seen.push_str(&String::from_utf8_lossy(
                &chunk.unwrap().expect("stream open"),
            ));
        }
    };
    read_until(1, &mut seen).await;
    let (status, _) = edge
        .post(&machine_path(APP, &id, "/restart"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    read_until(2, &mut seen).await;

    edge.delete(&machine_path(APP, &id, "?force=true")).await;
    let end = tokio::time::timeout(BOOT, async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            drop(chunk);
        }
    });
    end.await
        .expect("the stream ends once the machine is destroyed");
    edge.shutdown().await;
}

/// A followed log keeps coming across a rotation: a machine printing more than a log
/// file holds is followed into the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_survive_rotation() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(CHATTY_IMAGE).started().await.id;
    let mut res = follow(&edge, &id).await;
    let (status, _) = edge
        .post(&machine_path(APP, &id, "/restart"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The first run's marker is in the current file; the second run's comes after the
    // file was rotated under the open answer.
    let mut tail = String::new();
    let mut markers = 0;
    while markers < 2 {
        let chunk = tokio::time::timeout(BOOT, res.chunk())
            .await
            .expect("output in time")
            .unwrap()
            .expect("stream open");
        tail.push_str(&String::from_utf8_lossy(&chunk));
        markers += tail.matches(CHATTY_MARKER).count();
        let keep = tail.len().saturating_sub(CHATTY_MARKER.len() - 1);
        tail.drain(..tail.floor_char_boundary(keep));
    }
    let rotated = edge
        .config
        .data_dir
        .join("machines")
        .join(&id)
        .join("machine.log.1");
    assert!(rotated.exists());
    edge.shutdown().await;
}

/// The machine's log, followed.
async fn follow(edge: &TestEdge, id: &str) -> reqwest::Response {
    let path = machine_path(APP, id, "/logs?follow=true");
    let res = edge
        .api_request(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res
}
