//! Cluster benchmarks on loopback: three nats-server processes as one JetStream cluster
//! and three edgewake nodes (release build, one tokio worker each), as the tests start
//! them. Run: `cargo bench --bench cluster [-- CHANGES SECONDS WAKES]`.
//!
//! - propagation: CHANGES metadata writes through node A's API to a machine A hosts;
//!   each is timed from the call to the moment both other nodes' APIs show it (they are
//!   polled back to back), p50/p99;
//! - backhaul: wrk (`-t1 -c64`, SECONDS) through edge A to node B's machine over the
//!   backhaul, against the same requests to node B's own edge; rps, p99, and the CPU
//!   each node spent per request (from /proc), from which the rate with one core each
//!   follows: the busier node sets it;
//! - wake: WAKES times, stop B's machine, then one request through A (across the
//!   backhaul) or through B itself; time to the answer minus the machine's own boot
//!   (`boot_us` of its `start` event), medians.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `changes` metadata writes on `a` until `b` and `c` both show each.
async fn propagation(a: &Node, b: &Node, c: &Node, id: &str, changes: usize) -> Vec<Duration> {
    let key_path = machine_path(APP, id, "/metadata/v");
    let mut took = Vec::with_capacity(changes);
    for i in 0..changes {
        let value = i.to_string();
        let began = Instant::now();
        let (status, body) = a.post(&key_path, json!({"value": value})).await;
        assert!(status.is_success(), "{status} {body}");
        for node in [b, c] {
            loop {
                let (_, seen) = node.get(&key_path).await;
                if seen["value"] == value.as_str() {
                    break;
                }
            }
        }
        took.push(began.elapsed());
    }
    took.sort();
    took
}

/// Clock ticks (user + system) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

struct Load {
    rps: f64,
    p99_ms: f64,
    requests: f64,
}

/// One wrk run against `edge` for clients in Sydney; returns rps, p99 and requests.
fn wrk(edge: &Node, seconds: u64) -> Load {
    let output = std::process::Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{seconds}s"), "--latency"])
        .args(["-H", &format!("Host: {APP}.localhost")])
        .args(["-H", &format!("X-Forwarded-For: {IN_SYDNEY}")])
        .arg(format!("http://{}/", edge.listeners.http))
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            .unwrap_or_default()
    };
    let latency = |v: String| {
        let number = |s: &str| s.parse::<f64>().unwrap_or(0.0);
        match () {
            _ if v.ends_with("us") => number(&v[..v.len() - 2]) / 1000.0,
            _ if v.ends_with("ms") => number(&v[..v.len() - 2]),
            _ if v.ends_with('s') => number(&v[..v.len() - 1]) * 1000.0,
            _ => number(&v),
        }
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    Load {
        rps: field("Requests/sec").parse().unwrap_or(0.0),
        p99_ms: latency(field("99%")),
        requests,
    }
}

/// A wrk run, and the CPU per request that `a` and `b` spent on it, in µs.
fn load_with_cpu(edge: &Node, a: &Node, b: &Node, seconds: u64) -> (Load, f64, f64) {
    let hz = 100.0; // USER_HZ on Linux
    let (a0, b0) = (cpu_ticks(a.pid()), cpu_ticks(b.pid()));
    let load = wrk(edge, seconds);
    let (a1, b1) = (cpu_ticks(a.pid()), cpu_ticks(b.pid()));
    let requests = load.requests;
    let per = |ticks: u64| ticks as f64 / hz / requests * 1e6;
    (load, per(a1 - a0), per(b1 - b0))
}

/// The time from a request to its answer with the machine stopped, minus the machine's
/// own boot, `wakes` times; the median.
async fn wake_overhead(through: &Node, host: &Node, id: &str, wakes: usize) -> Duration {
    let mut overheads = Vec::new();
    for _ in 0..wakes {
        let (status, body) = host.post(&machine_path(APP, id, "/stop"), json!({})).await;
        assert!(status.is_success(), "{status} {body}");
        through.wait_for_state(APP, id, "stopped").await;
        let began = Instant::now();
        let res = through.request(APP, "/", IN_SYDNEY).send().await.unwrap();
        let took = began.elapsed();
        assert!(res.status().is_success());
        let (_, machine) = host.get(&machine_path(APP, id, "")).await;
        let boot = machine["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "start")
            .and_then(|e| e["request"]["boot_us"].as_u64())
            .unwrap();
        overheads.push(took.saturating_sub(Duration::from_micros(boot)));
    }
    overheads.sort();
    percentile(&overheads, 0.5)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let changes = args.first().copied().unwrap_or(1000);
    let seconds = args.get(1).copied().unwrap_or(5) as u64;
    let wakes = args.get(2).copied().unwrap_or(30);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsCluster::start(dir.path());
        let urls = nats.urls();
        let one_worker = [("TOKIO_WORKER_THREADS", "1"), ("RUST_LOG", "error")];
        let a = Node::start_with(dir.path(), "ams-1", "ams", &urls, &one_worker).await;
        let b = Node::start_with(dir.path(), "syd-1", "syd", &urls, &one_worker).await;
        let c = Node::start_with(dir.path(), "cdg-1", "cdg", &urls, &one_worker).await;
        wait_until_formed(&a, 3).await;
        let (status, body) = a.post("/v1/apps", json!({"app_name": APP})).await;
        assert!(status.is_success(), "{body}");
        for node in [&b, &c] {
            wait::until_true("the app everywhere", SETTLE, async || {
                node.get(&format!("/v1/apps/{APP}")).await.0.is_success()
            })
            .await;
        }
        let mut config = seed_config(RUNTIME_IMAGE);
        config["services"][0]["autostop"] = Value::from(false);
        let create = |region: &str| json!({"config": config, "region": region});
        let (_, on_a) = a.post(&machines_path(APP), create("ams")).await;
        let (_, on_b) = a.post(&machines_path(APP), create("syd")).await;
        let (on_a, on_b) = (id_of(&on_a), id_of(&on_b));
        for node in [&a, &b, &c] {
            node.wait_for_state(APP, &on_a, "started").await;
            node.wait_for_state(APP, &on_b, "started").await;
        }

        let took = propagation(&a, &b, &c, &on_a, changes).await;
        println!(
            "propagation over {changes} changes (API write on A to both B and C showing it): p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&took, 0.5)),
            ms(percentile(&took, 0.99))
        );

        let (direct, _, direct_b) = load_with_cpu(&b, &a, &b, seconds);
        let (relayed, relay_a, relay_b) = load_with_cpu(&a, &a, &b, seconds);
        println!(
            "backhaul, wrk -t1 -c64 {seconds}s, clients in Sydney:\n  B direct:      {:>8.0} rps, p99 {:.2} ms; B {:.1} us CPU/request\n  A -> B (relay): {:>8.0} rps, p99 {:.2} ms; A {:.1} us, B {:.1} us CPU/request",
            direct.rps, direct.p99_ms, direct_b, relayed.rps, relayed.p99_ms, relay_a, relay_b
        );
        let one_core_each = 1e6 / relay_a.max(relay_b);
        let direct_one_core = 1e6 / direct_b;
        println!(
            "  ratio measured {:.2}; with one core each (1 / busier node's CPU per request): {:.0} vs {:.0} rps = {:.2}",
            relayed.rps / direct.rps,
            one_core_each,
            direct_one_core,
            one_core_each / direct_one_core
        );

        let across = wake_overhead(&a, &b, &on_b, wakes).await;
        let local = wake_overhead(&b, &b, &on_b, wakes).await;
        println!(
            "wake overhead (answer minus the machine's boot), median of {wakes}: local {:.2} ms, across the backhaul {:.2} ms, added {:.2} ms",
            ms(local),
            ms(across),
            ms(across) - ms(local)
        );
        drop(nats);
    });
}
