//! Test helpers: a real edgewake on port 0 with its own data dir and loopback range,
//! real machine processes, and clients for its API and edge.
//!
//! - here: `TestEdge` (start, restart, API calls, requests through the edge) and the
//!   test config with its images;
//! - `machines`: a test's machine (`edge.app_with_machine(IMAGE).started()`), its JSON
//!   (paths, events, errors) and its processes;
//! - `wait`: waiting on a condition with a deadline, instead of sleeping;
//! - `process`: the `edgewake` binary in a process of its own;
//! - `images`, `sandbox`, `tls`: test images and a registry, the sandbox driver's
//!   setup, TLS clients;
//! - `geo`: a geo database placing address ranges in cities;
//! - `cluster`: a NATS JetStream cluster and edgewake nodes in processes of their own.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cli;
pub mod cluster;
pub mod geo;
pub mod images;
mod machines;
pub mod pebble;
mod process;
pub mod sandbox;
pub mod tls;
pub mod wait;

pub use machines::*;
pub use process::*;

use edgewake::addresses::ClaimError;
use edgewake::config::{Config, ImageConfig};
use edgewake::drivers::Driver;
use edgewake::server::{self, Options, Running, StartError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "test-token";
pub const APP: &str = "user-functions";
pub const RUNTIME_IMAGE: &str = "flyio/fastify-functions";
/// Exits with status 3 at once, before listening.
pub const CRASH_IMAGE: &str = "test/crash";
/// The runtime, booting 300 ms late (so a herd of requests all arrive while it starts).
pub const SLOW_BOOT_IMAGE: &str = "test/slow-boot";
/// The runtime, taking 1 s to exit after SIGTERM (so a stop is observably in progress).
pub const SLOW_STOP_IMAGE: &str = "test/slow-stop";
/// Prints 9 MB (more than a log file holds before it is rotated), a marker, then runs
/// the runtime.
pub const CHATTY_IMAGE: &str = "test/chatty";
pub const CHATTY_MARKER: &str = "after-the-flood";
/// How long a machine may take to boot (or to stop) before a test gives up on it.
pub const BOOT: Duration = Duration::from_secs(10);

/// The directory holding the built binaries (`edgewake`, `edgewake-functions`).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_edgewake-functions"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A /24 in 127.0.0.0/8 that no other test is likely to use: machines of concurrent
/// tests must not fight over the same address and port.
pub fn random_loopback_range() -> String {
    let [a, b] = edgewake::ids::random_bytes::<2>();
    drawn(format!("127.{}.{}.0/24", 64 + a % 180, b))
}

/// Ranges drawn at random by these helpers: a `TestEdge` that finds one claimed by
/// another test's edgewake (on this host, any test binary's) draws another.
static DRAWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// How many ranges a `TestEdge` draws before it gives up.
const MAX_RANGE_DRAWS: usize = 8;

fn drawn(range: String) -> String {
    DRAWN.lock().unwrap().push(range.clone());
    range
}

fn was_drawn(range: &str) -> bool {
    DRAWN.lock().unwrap().iter().any(|r| r == range)
}

/// Draws the config's machine range anew (the sandbox's network for the sandbox driver).
fn redraw(config: &mut Config) {
    if config.machines.driver == edgewake::config::DriverKind::Sandbox {
        config.sandbox.network = sandbox::random_sandbox_network().parse().unwrap();
    } else {
        config.machines.private_ip_range = random_loopback_range().parse().unwrap();
    }
}

fn image(command: &[&str], env: &[(&str, &str)]) -> ImageConfig {
    // A test that fails before it stops its edgewake leaves no machine behind: the
    // bundled runtime exits once the test process has ended.
    let orphaned = [("EXIT_WHEN_ORPHANED", "1")];
    ImageConfig {
        command: command.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .chain(&orphaned)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A config for tests: loopback listeners on port 0, generous idle timeout (tests that
/// want idle stops shorten it), test images beside the runtime.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.edge.http = "127.0.0.1:0".parse().unwrap();
    config.edge.https = "127.0.0.1:0".parse().unwrap();
    config.tls.certs_dir = data_dir.join("certs");
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.edge.idle_timeout = Duration::from_secs(60);
    config.edge.wake_timeout = Duration::from_secs(10);
    config.edge.reap_interval = Duration::from_millis(50);
    config.edge.drain_timeout = Duration::from_secs(5);
    config.machines.private_ip_range = random_loopback_range().parse().unwrap();
    config.machines.stop_timeout = Duration::from_secs(2);
    let runtime = "{bin_dir}/edgewake-functions";
    config.images = BTreeMap::from([
        (RUNTIME_IMAGE.to_string(), image(&[runtime], &[])),
        (
            CRASH_IMAGE.to_string(),
            image(&["sh", "-c", "echo booting; exit 3"], &[]),
        ),
        (
            SLOW_BOOT_IMAGE.to_string(),
            image(&[runtime], &[("STARTUP_DELAY_MS", "300")]),
        ),
        (
            SLOW_STOP_IMAGE.to_string(),
            image(&[runtime], &[("SHUTDOWN_DELAY_MS", "1000")]),
        ),
        (
            CHATTY_IMAGE.to_string(),
            image(
                &[
                    "sh",
                    "-c",
                    &format!(
                        "head -c 9000000 /dev/zero | tr '\\0' x; echo; echo {CHATTY_MARKER}; exec {runtime}"
                    ),
                ],
                &[],
            ),
        ),
    ]);
    config
}

fn test_options(driver: Option<Arc<dyn Driver>>) -> Options {
    Options {
        api_token: Some(TOKEN.into()),
        bin_dir: Some(bin_dir()),
        driver,
        acme_backoff: None,
    }
}

/// A running edgewake and clients for it.
pub struct TestEdge {
    pub running: Running,
    pub config: Config,
    pub client: reqwest::Client,
    api_client: Api,
    _data_dir: Option<tempfile::TempDir>,
}

impl TestEdge {
    pub async fn start() -> TestEdge {
        TestEdge::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestEdge {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        TestEdge::start_config(config, Some(dir)).await
    }

    /// An edgewake whose machines run on `driver` (the in-memory fake, for faults no
    /// real process can be made to show on cue).
    pub async fn start_with_driver(driver: Arc<dyn Driver>) -> TestEdge {
        TestEdge::start_with_driver_and(driver, |_| {}).await
    }

    /// An edgewake whose machines run on `driver`, with the config tweaked.
    pub async fn start_with_driver_and(
        driver: Arc<dyn Driver>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEdge {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        TestEdge::start_options(config, Some(dir), Some(driver)).await
    }

    /// An edgewake whose failed ACME orders are retried after `backoff` (doubling).
    pub async fn start_with_acme_backoff(
        tweak: impl FnOnce(&mut Config),
        backoff: edgewake::certificates::acme::timing::Backoff,
    ) -> TestEdge {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let options = Options {
            acme_backoff: Some(backoff),
            ..test_options(None)
        };
        TestEdge::start_with_options(config, Some(dir), options).await
    }

    async fn start_config(config: Config, dir: Option<tempfile::TempDir>) -> TestEdge {
        TestEdge::start_options(config, dir, None).await
    }

    async fn start_options(
        config: Config,
        dir: Option<tempfile::TempDir>,
        driver: Option<Arc<dyn Driver>>,
    ) -> TestEdge {
        TestEdge::start_with_options(config, dir, test_options(driver)).await
    }

    async fn start_with_options(
        config: Config,
        dir: Option<tempfile::TempDir>,
        options: Options,
    ) -> TestEdge {
        let mut config = config;
        let mut draws = 1;
        let running = loop {
            match server::start(config.clone(), options.clone()).await {
                Ok(running) => break running,
                Err(StartError::Range(ClaimError::Taken { range, .. }))
                    if was_drawn(&range.to_string()) && draws < MAX_RANGE_DRAWS =>
                {
                    draws += 1;
                    redraw(&mut config);
                }
                Err(e) => panic!("edgewake does not start: {e}"),
            }
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        TestEdge {
            api_client: Api::new(client.clone(), running.api_addr),
            running,
            config,
            client,
            _data_dir: dir,
        }
    }

    /// Shuts down cleanly and starts again on the same data dir and config.
    pub async fn restart(self) -> TestEdge {
        let TestEdge {
            running,
            config,
            _data_dir,
            ..
        } = self;
        running.shutdown();
        running.stopped().await;
        TestEdge::start_config(config, _data_dir).await
    }

    pub async fn shutdown(self) {
        self.running.shutdown();
        self.running.stopped().await;
    }

    pub async fn create_app(&self, name: &str) {
        let (status, body) = self
            .post(
                "/v1/apps",
                json!({"app_name": name, "org_slug": "personal"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub async fn machine(&self, app: &str, id: &str) -> Value {
        let (status, machine) = self.get(&machine_path(app, id, "")).await;
        assert_eq!(status, StatusCode::OK, "{machine}");
        machine
    }

    /// Polls the API until the machine is in `state` (tests only; the proxy never polls).
    pub async fn wait_for_state(
        &self,
        app: &str,
        id: &str,
        state: &str,
        within: Duration,
    ) -> Value {
        let what = format!("machine {id} to be {state}");
        wait::until(&what, within, async || {
            let machine = self.machine(app, id).await;
            if machine["state"] == state {
                Ok(machine)
            } else {
                Err(machine)
            }
        })
        .await
    }

    /// A GET through the edge to `<app>.localhost`, to add to and send.
    pub fn request_to(&self, app: &str, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("http://{}{path}", self.running.http_addr))
            .header("host", format!("{app}.localhost"))
    }

    /// A request through the edge to `<app>.localhost`.
    pub async fn request(&self, app: &str, path: &str) -> reqwest::Response {
        self.request_to(app, path)
            .send()
            .await
            .expect("edge answers")
    }
}

/// A Machines API reached with the test's token: a `TestEdge`'s (through `Deref`, so
/// `edge.get(...)` works), or a cluster node's.
pub struct Api {
    client: reqwest::Client,
    addr: std::net::SocketAddr,
}

impl Api {
    pub fn new(client: reqwest::Client, addr: std::net::SocketAddr) -> Api {
        Api { client, addr }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An API request with the test's token, to add to and send with [`answer`].
    pub fn api_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.api_url(path))
            .bearer_auth(TOKEN)
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.api_request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::DELETE, path, None).await
    }
}

impl std::ops::Deref for TestEdge {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api_client
    }
}

/// Sends an API request and reads its answer: the status and the JSON body (or the
/// text, as a JSON string, when it is not JSON).
pub async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = request.send().await.expect("API answers");
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An answer read whole, and the moment it came.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub arrived: std::time::Instant,
}

/// Sends `request` on a task of its own, so the test goes on while it is in flight;
/// the task gives the answer read whole.
pub fn spawn_request(request: reqwest::RequestBuilder) -> tokio::task::JoinHandle<Answer> {
    tokio::spawn(async move {
        let res = request.send().await.expect("edge answers");
        let (status, headers) = (res.status(), res.headers().clone());
        let body = res.text().await.expect("the whole answer");
        Answer {
            status,
            headers,
            body,
            arrived: std::time::Instant::now(),
        }
    })
}
