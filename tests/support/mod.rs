//! Test helpers: a real edgewake on port 0 with its own data dir and loopback range,
//! real machine processes, and clients for its API and edge.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod images;
pub mod sandbox;
pub mod tls;

use edgewake::config::{Config, ImageConfig};
use edgewake::drivers::Driver;
use edgewake::server::{self, Options, Running};
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
    format!("127.{}.{}.0/24", 64 + a % 180, b)
}

fn image(command: &[&str], env: &[(&str, &str)]) -> ImageConfig {
    ImageConfig {
        command: command.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
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

/// A running edgewake and clients for it.
pub struct TestEdge {
    pub running: Running,
    pub config: Config,
    pub client: reqwest::Client,
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

    /// An edgewake on `driver` with `tweak` applied to its config.
    pub async fn start_with_driver_and(
        driver: Arc<dyn Driver>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEdge {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        TestEdge::start_options(config, Some(dir), Some(driver)).await
    }

    async fn start_config(config: Config, dir: Option<tempfile::TempDir>) -> TestEdge {
        TestEdge::start_options(config, dir, None).await
    }

    async fn start_options(
        config: Config,
        dir: Option<tempfile::TempDir>,
        driver: Option<Arc<dyn Driver>>,
    ) -> TestEdge {
        let options = Options {
            api_token: Some(TOKEN.into()),
            bin_dir: Some(bin_dir()),
            driver,
        };
        let running = server::start(config.clone(), options)
            .await
            .expect("edgewake starts");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        TestEdge {
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

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.api_addr)
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.api_url(path))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("API answers");
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
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

    pub async fn create_app(&self, name: &str) {
        let (status, body) = self
            .post(
                "/v1/apps",
                json!({"app_name": name, "org_slug": "personal"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Creates a machine of `image` with the seed's services; returns its JSON.
    pub async fn create_machine(&self, app: &str, image: &str, skip_launch: bool) -> Value {
        let body = json!({"config": seed_config(image), "skip_launch": skip_launch});
        let (status, machine) = self.post(&format!("/v1/apps/{app}/machines"), body).await;
        assert_eq!(status, StatusCode::OK, "{machine}");
        machine
    }

    /// Creates a machine of `image` that boots at once and waits until it has started;
    /// returns its id.
    pub async fn started_machine(&self, app: &str, image: &str) -> String {
        self.started_machine_with(app, seed_config(image)).await
    }

    /// Creates a machine with `config` that boots at once and waits until it has
    /// started; returns its id.
    pub async fn started_machine_with(&self, app: &str, config: Value) -> String {
        let body = json!({"config": config});
        let (status, machine) = self.post(&format!("/v1/apps/{app}/machines"), body).await;
        assert_eq!(status, StatusCode::OK, "{machine}");
        let id = machine["id"].as_str().unwrap().to_string();
        self.wait_for_state(app, &id, "started", Duration::from_secs(10))
            .await;
        id
    }

    pub async fn machine(&self, app: &str, id: &str) -> Value {
        let (status, machine) = self.get(&format!("/v1/apps/{app}/machines/{id}")).await;
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
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let machine = self.machine(app, id).await;
            if machine["state"] == state {
                return machine;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "machine never became {state}: {machine}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request through the edge to `<app>.localhost`.
    pub async fn request(&self, app: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}{path}", self.running.http_addr))
            .header("host", format!("{app}.localhost"))
            .send()
            .await
            .expect("edge answers")
    }
}

/// The seed's machine config: 443 (tls, http) and 80 (http) to internal port 8080.
pub fn seed_config(image: &str) -> Value {
    json!({
        "image": image,
        "env": {"APP_ENV": "production"},
        "services": [{
            "ports": [{"port": 443, "handlers": ["tls", "http"]}, {"port": 80, "handlers": ["http"]}],
            "protocol": "tcp",
            "internal_port": 8080
        }]
    })
}

/// How many events of `kind` the machine has.
pub fn count_events(machine: &Value, kind: &str) -> usize {
    machine["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Pids of live processes that run as machine `id` (their environment says so).
pub fn machine_pids(id: &str) -> Vec<u32> {
    let marker = format!("FLY_MACHINE_ID={id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes())
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// Reads (and ignores) whatever the peer sends, never answering, until it closes the
/// connection; fails if it has not within `within`.
pub async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let closing = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closing)
        .await
        .expect("the connection was closed");
}

/// A loopback port that was free a moment ago (for the edgewake binary's flags).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `edgewake` binary running `serve` in its own process.
pub struct EdgewakeProcess {
    pub child: std::process::Child,
    pub http: std::net::SocketAddr,
    pub https: std::net::SocketAddr,
    pub api: std::net::SocketAddr,
}

impl EdgewakeProcess {
    /// Starts `edgewake serve` with the test config written to `dir`, and waits until
    /// its API answers.
    pub async fn spawn(dir: &Path, range: &str) -> EdgewakeProcess {
        EdgewakeProcess::spawn_config(dir, &process_config(dir, range), &[]).await
    }

    /// Starts `edgewake serve --driver sandbox` with machines in `network`.
    pub async fn spawn_sandboxed(dir: &Path, network: &str) -> EdgewakeProcess {
        let config = process_config(dir, &random_loopback_range())
            + &format!("[sandbox]\nnetwork = \"{network}\"\npids_limit = 64\n");
        EdgewakeProcess::spawn_config(dir, &config, &["--driver", "sandbox"]).await
    }

    /// Starts `edgewake serve` under shell limits set first (e.g. `ulimit -n 1024`).
    pub async fn spawn_limited(dir: &Path, range: &str, ulimits: &str) -> EdgewakeProcess {
        let config = process_config(dir, range);
        EdgewakeProcess::spawn_under(dir, &config, &[], Some(ulimits)).await
    }

    async fn spawn_config(dir: &Path, config_text: &str, extra: &[&str]) -> EdgewakeProcess {
        EdgewakeProcess::spawn_under(dir, config_text, extra, None).await
    }

    async fn spawn_under(
        dir: &Path,
        config_text: &str,
        extra: &[&str],
        ulimits: Option<&str>,
    ) -> EdgewakeProcess {
        let config = dir.join("edgewake.toml");
        std::fs::write(&config, config_text).unwrap();
        let (http, https, api) = (free_port(), free_port(), free_port());
        let binary = env!("CARGO_BIN_EXE_edgewake");
        let mut command = match ulimits {
            None => std::process::Command::new(binary),
            Some(ulimits) => {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &format!("{ulimits} && exec \"$0\" \"$@\""), binary]);
                sh
            }
        };
        let child = command
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(extra)
            .args([
                "--http",
                &format!("127.0.0.1:{http}"),
                "--api",
                &format!("127.0.0.1:{api}"),
                "--https",
                &format!("127.0.0.1:{https}"),
            ])
            .env("EDGEWAKE_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let process = EdgewakeProcess {
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            https: format!("127.0.0.1:{https}").parse().unwrap(),
            api: format!("127.0.0.1:{api}").parse().unwrap(),
        };
        process.wait_until_serving().await;
        process
    }

    async fn wait_until_serving(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let res = client
                .get(format!("http://{}/v1/apps", self.api))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edgewake did not start serving");
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edgewake did not exit");
    }
}

/// A test that fails must not leave its edgewake running: it would keep the test
/// runner's output pipe open (and CI waiting) for ever.
impl Drop for EdgewakeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn process_config(dir: &Path, range: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
[tls]
certs_dir = "{certs}"
[edge]
region = "ams"
idle_timeout = "60s"
[machines]
private_ip_range = "{range}"
stop_timeout = "2s"
[[regions]]
code = "ams"
latitude = 52.374
longitude = 4.890
[images."{RUNTIME_IMAGE}"]
command = ["{{bin_dir}}/edgewake", "functions"]
"#,
        data = dir.join("data").display(),
        certs = dir.join("certs").display(),
    )
}

/// `/v1/apps/{app}/machines/{id}{rest}`.
pub fn machine_path(app: &str, id: &str, rest: &str) -> String {
    format!("/v1/apps/{app}/machines/{id}{rest}")
}

/// Asserts an error answer: the status and a JSON body with a non-empty `error` string.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {body}"));
    assert!(!message.is_empty(), "{body}");
}

/// The id of a machine's JSON, as a String.
pub fn id_of(machine: &Value) -> String {
    machine["id"]
        .as_str()
        .expect("machine has an id")
        .to_string()
}
