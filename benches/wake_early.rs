//! What waking early saves, against a real edgewake (in this process) and a real machine
//! of the bundled runtime booting in BOOT_MS (its `STARTUP_DELAY_MS`). Run:
//! `cargo bench --bench wake_early [-- ROUNDS]`.
//!
//! - slow TLS client: the client completes its handshake, then takes PAUSE_MS before
//!   sending its request (a slow or distant client's round trips). With `wake_early`
//!   the wake begins at the ClientHello, so the boot overlaps the pause.
//! - large upload: a POST of UPLOAD_MB sent at a bounded rate to the sleeping machine,
//!   against the same upload to the running one. The wake begins when the headers are
//!   read, before the body, so the boot overlaps the upload as far as the socket
//!   buffers hold the body meanwhile.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncWriteExt;

const BOOT_MS: u64 = 300;
const PAUSE_MS: u64 = 250;
const UPLOAD_MB: usize = 32;
/// The upload's pace: 64 MB/s (a fast client on a good link, so the body takes ~0.5 s).
const UPLOAD_CHUNK: usize = 64 * 1024;
const UPLOAD_CHUNK_GAP: Duration = Duration::from_millis(1);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn stop(edge: &TestEdge, app: &str, id: &str) {
    let (status, _) = edge.post(&machine_path(app, id, "/stop"), json!({})).await;
    assert!(status.is_success());
    edge.wait_for_state(app, id, "stopped", BOOT).await;
}

/// Handshake, pause, one GET; the time from TCP connect to the whole answer.
async fn slow_tls_request(edge: &TestEdge, app: &str) -> f64 {
    let began = Instant::now();
    let host = format!("{app}.localhost");
    let stream = tls::connect(edge.running.https_addr, &host, tls::trusting_anything())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(PAUSE_MS)).await; // the client's own slowness
    let mut sender = tls::http1_over(stream).await;
    let (status, _) = tls::send1(&mut sender, tls::get(&host, "/")).await;
    assert!(status.is_success(), "{status}");
    began.elapsed().as_secs_f64() * 1e3
}

/// A paced POST of UPLOAD_MB over plain HTTP; the time to the whole answer.
async fn upload(edge: &TestEdge, app: &str) -> f64 {
    let began = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(edge.running.http_addr)
        .await
        .unwrap();
    let length = UPLOAD_MB * 1024 * 1024;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {app}.localhost\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; UPLOAD_CHUNK];
    for _ in 0..length / UPLOAD_CHUNK {
        stream.write_all(&chunk).await.unwrap();
        tokio::time::sleep(UPLOAD_CHUNK_GAP).await;
    }
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..40.min(answer.len())])
    );
    began.elapsed().as_secs_f64() * 1e3
}

async fn machine(edge: &TestEdge, app: &str, early: bool) -> String {
    edge.create_app(app).await;
    let booting = |c: &mut serde_json::Value| {
        c["env"]["STARTUP_DELAY_MS"] = json!(BOOT_MS.to_string());
        c["services"][0]["http_options"] = json!({"wake_early": early});
    };
    edge.new_machine(app, RUNTIME_IMAGE)
        .config(booting)
        .started()
        .await
        .id
}

fn main() {
    let rounds: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let edge = TestEdge::start_with(|c| c.edge.idle_timeout = Duration::from_secs(3600)).await;
        let late = machine(&edge, "late", false).await;
        let early = machine(&edge, "early", true).await;
        println!("boot {BOOT_MS} ms, client pause {PAUSE_MS} ms, upload {UPLOAD_MB} MB; median of {rounds}");

        let (mut cold_late, mut cold_early, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            stop(&edge, "late", &late).await;
            cold_late.push(slow_tls_request(&edge, "late").await);
            stop(&edge, "early", &early).await;
            cold_early.push(slow_tls_request(&edge, "early").await);
            warm.push(slow_tls_request(&edge, "early").await);
        }
        let (l, e, w) = (median(cold_late), median(cold_early), median(warm));
        println!("slow TLS client: warm {w:.0} ms; cold, woken at the request {l:.0} ms; cold, woken at the ClientHello {e:.0} ms: saves {:.0} ms", l - e);

        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            stop(&edge, "late", &late).await;
            cold.push(upload(&edge, "late").await);
            warm.push(upload(&edge, "late").await);
        }
        let (c, w) = (median(cold), median(warm));
        println!(
            "large upload: warm {w:.0} ms, cold {c:.0} ms: the wake added {:.0} ms of its {BOOT_MS} ms boot (saved {:.0} ms against waking after the body)",
            c - w,
            w + BOOT_MS as f64 - c
        );
        edge.shutdown().await;
    });
}
