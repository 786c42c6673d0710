//! Cluster benchmarks on loopback: three nats-server processes as one JetStream cluster
//! and three edgewake nodes (release build, one tokio worker each), as the tests start
//! them. Run: `cargo bench --bench cluster [-- CHANGES SECONDS WAKES ROUNDS]`
//! (defaults 1000 5 30 3; every round measures all three, ratios are within a round).
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
    // A run answered with errors measured something else (refusals are cheap): stop.
    let refused = text.lines().any(|l| l.trim_start().starts_with("Non-2xx"));
    assert!(!refused, "wrk saw error answers: {text}");
    if let Some(errors) = text.lines().find(|l| l.contains("Socket errors")) {
        println!("  (wrk: {})", errors.trim());
    }
    assert!(requests > 0.0, "wrk served nothing: {text}");
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
/// own boot.
async fn wake_overhead(through: &Node, host: &Node, id: &str) -> Duration {
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
    took.saturating_sub(Duration::from_micros(boot))
}

/// `wakes` wakes of `host`'s machine through `host` itself and through `edge` (over
/// the backhaul), interleaved; the medians (local, across).
async fn wake_overheads(edge: &Node, host: &Node, id: &str, wakes: usize) -> (Duration, Duration) {
    let (mut local, mut across) = (Vec::new(), Vec::new());
    for _ in 0..wakes {
        local.push(wake_overhead(host, host, id).await);
        across.push(wake_overhead(edge, host, id).await);
    }
    local.sort();
    across.sort();
    (percentile(&local, 0.5), percentile(&across, 0.5))
}

/// What one round measured.
struct Round {
    propagation_p50: Duration,
    propagation_p99: Duration,
    direct: Load,
    direct_b: f64,
    relayed: Load,
    relay_a: f64,
    relay_b: f64,
    local_wake: Duration,
    across_wake: Duration,
}

impl Round {
    /// Requests a second with one core each: one core's worth of the busier node's
    /// CPU per request, relayed over direct.
    fn one_core_ratio(&self) -> f64 {
        self.direct_b / self.relay_a.max(self.relay_b)
    }

    fn print(&self, n: usize) {
        println!(
            "round {n}: propagation p50 {:.2} ms, p99 {:.2} ms",
            ms(self.propagation_p50),
            ms(self.propagation_p99)
        );
        println!(
            "  B direct:       {:>7.0} rps, p99 {:>6.2} ms; B {:.1} us CPU/request",
            self.direct.rps, self.direct.p99_ms, self.direct_b
        );
        println!(
            "  A -> B (relay): {:>7.0} rps, p99 {:>6.2} ms; A {:.1} us, B {:.1} us CPU/request",
            self.relayed.rps, self.relayed.p99_ms, self.relay_a, self.relay_b
        );
        println!(
            "  relay/direct: measured rps {:.2}, p99 {:.2}; one core each {:.0} vs {:.0} rps = {:.2}",
            self.relayed.rps / self.direct.rps,
            self.relayed.p99_ms / self.direct.p99_ms,
            1e6 / self.relay_a.max(self.relay_b),
            1e6 / self.direct_b,
            self.one_core_ratio()
        );
        println!(
            "  wake overhead (answer minus the machine's boot), medians: local {:.2} ms, across the backhaul {:.2} ms, added {:.2} ms",
            ms(self.local_wake),
            ms(self.across_wake),
            ms(self.across_wake) - ms(self.local_wake)
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let changes = args.first().copied().unwrap_or(1000);
    let seconds = args.get(1).copied().unwrap_or(5) as u64;
    let wakes = args.get(2).copied().unwrap_or(30);
    let rounds = args.get(3).copied().unwrap_or(3);
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
        println!(
            "{rounds} rounds; each: {changes} changes, wrk -t1 -c64 {seconds}s (direct, then relayed), {wakes} wakes each way (interleaved); clients in Sydney"
        );
        let mut measured = Vec::new();
        for n in 1..=rounds {
            let took = propagation(&a, &b, &c, &on_a, changes).await;
            let (direct, _, direct_b) = load_with_cpu(&b, &a, &b, seconds);
            let (relayed, relay_a, relay_b) = load_with_cpu(&a, &a, &b, seconds);
            let (local_wake, across_wake) = wake_overheads(&a, &b, &on_b, wakes).await;
            let round = Round {
                propagation_p50: percentile(&took, 0.5),
                propagation_p99: percentile(&took, 0.99),
                direct,
                direct_b,
                relayed,
                relay_a,
                relay_b,
                local_wake,
                across_wake,
            };
            round.print(n);
            measured.push(round);
        }
        let of = |f: &dyn Fn(&Round) -> f64| median(measured.iter().map(f).collect());
        println!(
            "medians of {rounds} rounds: propagation p50 {:.2} ms, p99 {:.2} ms; relay/direct one core each {:.2} (measured rps {:.2}, p99 {:.2}); wake added {:.2} ms",
            of(&|r| ms(r.propagation_p50)),
            of(&|r| ms(r.propagation_p99)),
            of(&|r| r.one_core_ratio()),
            of(&|r| r.relayed.rps / r.direct.rps),
            of(&|r| r.relayed.p99_ms / r.direct.p99_ms),
            of(&|r| ms(r.across_wake) - ms(r.local_wake)),
        );
        // Stopped, not killed: a killed node leaves its machines running.
        for node in [a, b, c] {
            node.stop().await;
        }
        drop(nats);
    });
}
