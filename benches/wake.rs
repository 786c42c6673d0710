//! Wake and herd benchmarks against a real edgewake (in this process, release build) and a
//! real machine of the bundled runtime. Run: `cargo bench --bench wake [-- CYCLES HERD]`.
//!
//! - wake: CYCLES times, stop the machine through the API, then send one request; the time
//!   to the response's first byte is set beside the machine's own boot (spawn to accepting
//!   on its port, `boot_us` of its `start` event): the difference is edgewake's overhead.
//! - herd: HERD concurrent requests to the stopped machine; starts, errors, p50/p99.
//!
//! `WAKE_DRIVER=sandbox` runs the machine as an OCI image under runc instead (root; the
//! image is the tests' one: the bundled runtime and its libraries).

#[path = "../tests/support/mod.rs"]
mod support;

use edgewake::config::{Config, ImageConfig};
use edgewake::server::{self, Options, Running};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench";
const APP: &str = "bench";
const SANDBOX_IMAGE: &str = "edgewake.test/functions:1";

fn config(data_dir: PathBuf) -> Config {
    let mut config = Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    };
    config.edge.http = "127.0.0.1:0".parse().unwrap();
    config.edge.https = "127.0.0.1:0".parse().unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.edge.idle_timeout = Duration::from_secs(3600);
    config.tls.certs_dir = data_dir.join("certs");
    config.machines.private_ip_range = "127.79.0.0/24".parse().unwrap();
    let runtime = ImageConfig {
        command: vec!["{bin_dir}/edgewake".into(), "functions".into()],
        env: BTreeMap::new(),
    };
    config.images = BTreeMap::from([("flyio/fastify-functions".to_string(), runtime)]);
    config
}

/// The directory of the release binaries (`cargo bench` builds `edgewake` beside this).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

struct Bench {
    running: Running,
    client: reqwest::Client,
    machine: String,
}

impl Bench {
    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("http://{}/v1{path}", self.running.api_addr);
        let res = self
            .client
            .request(method, url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    async fn stop(&self) {
        self.api(
            reqwest::Method::POST,
            &format!("/apps/{APP}/machines/{}/stop", self.machine),
            json!({}),
        )
        .await;
    }

    /// Time to the response head of one request through the edge.
    async fn request(&self) -> Result<Duration, String> {
        let began = Instant::now();
        let url = format!("http://{}/", self.running.http_addr);
        let res = self
            .client
            .get(url)
            .header("host", format!("{APP}.localhost"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ttfb = began.elapsed();
        let status = res.status();
        let _ = res.bytes().await;
        if status.is_success() {
            Ok(ttfb)
        } else {
            Err(status.to_string())
        }
    }

    async fn events(&self) -> Vec<Value> {
        let machine = self
            .api(
                reqwest::Method::GET,
                &format!("/apps/{APP}/machines/{}", self.machine),
                Value::Null,
            )
            .await;
        machine["events"].as_array().cloned().unwrap_or_default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "  {name:<28} median {:>8.2} ms   p99 {:>8.2} ms",
        percentile(&values, 0.5),
        percentile(&values, 0.99)
    );
}

async fn wake_cycles(bench: &Bench, cycles: usize) {
    let (mut ttfbs, mut boots, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cycles {
        bench.stop().await;
        let ttfb = bench
            .request()
            .await
            .expect("the wake succeeds")
            .as_secs_f64()
            * 1e3;
        let events = bench.events().await;
        let start = events
            .iter()
            .find(|e| e["type"] == "start")
            .expect("a start event");
        let boot = start["request"]["boot_us"].as_f64().unwrap() / 1e3;
        ttfbs.push(ttfb);
        boots.push(boot);
        overheads.push(ttfb - boot);
    }
    println!("wake: {cycles} cycles of stop -> request");
    summary("request to first byte", ttfbs);
    summary("machine boot (spawn->listen)", boots);
    summary("edgewake overhead", overheads);
}

async fn herd(bench: &Bench, size: usize) {
    bench.stop().await;
    let starts_before = bench
        .events()
        .await
        .iter()
        .filter(|e| e["type"] == "start")
        .count();
    let requests: Vec<_> = (0..size)
        .map(|_| {
            let (client, addr) = (bench.client.clone(), bench.running.http_addr);
            tokio::spawn(async move {
                let began = Instant::now();
                let res = client
                    .get(format!("http://{addr}/"))
                    .header("host", format!("{APP}.localhost"))
                    .send()
                    .await;
                let ok = res.map(|r| r.status().is_success()).unwrap_or(false);
                (ok, began.elapsed().as_secs_f64() * 1e3)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for request in requests {
        let (ok, ms) = request.await.unwrap();
        if ok { latencies.push(ms) } else { errors += 1 }
    }
    let starts = bench
        .events()
        .await
        .iter()
        .filter(|e| e["type"] == "start")
        .count()
        - starts_before;
    println!(
        "herd: {size} concurrent requests to a stopped machine: {starts} start(s), {errors} error(s)"
    );
    summary("latency", latencies);
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (cycles, herd_size) = (
        args.first().copied().unwrap_or(50),
        args.get(1).copied().unwrap_or(1000),
    );
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        api_token: Some(TOKEN.into()),
        bin_dir: Some(bin_dir()),
        ..Options::default()
    };
    let mut config = config(dir.path().join("data"));
    let sandboxed = std::env::var("WAKE_DRIVER").is_ok_and(|d| d == "sandbox");
    let image = if sandboxed {
        support::sandbox::sandboxed(&mut config);
        support::sandbox::import_test_image(&config.data_dir, SANDBOX_IMAGE);
        SANDBOX_IMAGE
    } else {
        "flyio/fastify-functions"
    };
    println!("driver: {}", config.machines.driver);
    let running = server::start(config, options).await.unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2000)
        .build()
        .unwrap();
    let mut bench = Bench {
        running,
        client,
        machine: String::new(),
    };
    bench
        .api(
            reqwest::Method::POST,
            "/apps",
            json!({"app_name": APP, "org_slug": "bench"}),
        )
        .await;
    let config = json!({"image": image, "services": [{"internal_port": 8080, "ports": [{"port": 80}], "autostop": false}]});
    let machine = bench
        .api(
            reqwest::Method::POST,
            &format!("/apps/{APP}/machines"),
            json!({"config": config, "skip_launch": true}),
        )
        .await;
    bench.machine = machine["id"].as_str().unwrap().to_string();
    bench.request().await.expect("the first wake succeeds");
    wake_cycles(&bench, cycles).await;
    herd(&bench, herd_size).await;
    bench.running.shutdown();
    bench.running.stopped().await;
}
