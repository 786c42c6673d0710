//! The `edgewake` binary in a process of its own (for signals, crashes and restarts),
//! with its log in a file the test can wait on.

use super::{RUNTIME_IMAGE, TOKEN, random_loopback_range, wait};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the binary may take to serve after it is spawned, and to exit after a signal.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port that was free a moment ago (for the edgewake binary's flags).
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` loopback ports that were free a moment ago, all different: each is held until
/// all are drawn (drawn one at a time, the kernel may give back a port it just gave:
/// two NATS servers of a test cluster were once handed the same route port).
///
/// They are drawn at random from below the kernel's ephemeral range, not with port 0:
/// a port from that range is the source port the kernel gives the next outgoing
/// connection, so another test's client could take it between this draw and the
/// binary's bind (CI once saw `Address already in use` that way).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let (low, high) = ports_below_ephemeral();
    let mut held: Vec<std::net::TcpListener> = Vec::with_capacity(N);
    for attempt in 0.. {
        if held.len() == N {
            break;
        }
        let [a, b] = edgewake::ids::random_bytes::<2>();
        let port = low + u16::from_be_bytes([a, b]) % (high - low);
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => held.push(listener),
            Err(e) if attempt >= MAX_PORT_DRAWS => panic!("no free port below {high}: {e}"),
            Err(_) => {}
        }
    }
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// Draws after which `free_ports` gives up (loopback cannot be bound, or the range is
/// full): a failing test rather than a hung one.
const MAX_PORT_DRAWS: usize = 10_000;

/// Ports no outgoing connection is given: the 16k below the ephemeral range's start
/// (`net.ipv4.ip_local_port_range`, 32768 by default), and never below 1024.
fn ports_below_ephemeral() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let start = range
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        start > 2048,
        "the ephemeral range starts at {start}: no room below it"
    );
    (start.saturating_sub(16384).max(1024), start)
}

/// Where an `edgewake serve` listens: the edge (HTTP, HTTPS) and the API.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub api: SocketAddr,
}

impl Listeners {
    /// Ports that were free a moment ago, on `ip`.
    pub fn free(ip: std::net::IpAddr) -> Listeners {
        Listeners::at(ip, free_ports())
    }

    /// The edge's HTTP and HTTPS ports and the API's, on `ip`.
    pub fn at(ip: std::net::IpAddr, [http, https, api]: [u16; 3]) -> Listeners {
        let at = |port| SocketAddr::new(ip, port);
        Listeners {
            http: at(http),
            https: at(https),
            api: at(api),
        }
    }
}

/// The `edgewake` binary running `serve` in its own process.
pub struct EdgewakeProcess {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub api: SocketAddr,
    /// Its stderr (`RUST_LOG=warn`): shown when a test fails, waited on with `wait_for_log`.
    log: PathBuf,
}

impl EdgewakeProcess {
    /// Starts `edgewake serve` with the test config written to `dir`, and waits until
    /// its API answers.
    pub async fn spawn(dir: &Path, range: &str) -> EdgewakeProcess {
        let config = process_config(dir, range);
        EdgewakeProcess::spawn_config(dir, &config, &[]).await
    }

    /// Starts `edgewake serve --driver sandbox` with machines in `network`.
    pub async fn spawn_sandboxed(dir: &Path, network: &str) -> EdgewakeProcess {
        let config = process_config(dir, &random_loopback_range())
            + &format!("[sandbox]\nnetwork = \"{network}\"\npids_limit = 64\n");
        let driver = ["--driver", "sandbox"];
        EdgewakeProcess::spawn_config(dir, &config, &driver).await
    }

    /// Starts `edgewake serve` with the test config and the API token variables of
    /// `tokens` (each set, or removed from the environment).
    pub async fn spawn_with_tokens(dir: &Path, tokens: TokenEnv<'_>) -> EdgewakeProcess {
        let config = process_config(dir, &random_loopback_range());
        let listeners = Listeners::free("127.0.0.1".parse().unwrap());
        EdgewakeProcess::spawn_full(dir, &config, listeners, &[], &[], tokens, None).await
    }

    /// Starts `edgewake serve` with the test config plus `more` (TOML appended), logging
    /// what `rust_log` says.
    pub async fn spawn_with(dir: &Path, more: &str, rust_log: &str) -> EdgewakeProcess {
        let config = process_config(dir, &random_loopback_range()) + more;
        EdgewakeProcess::spawn_logging(dir, &config, &[], rust_log).await
    }

    /// Starts `edgewake serve` under shell limits set first (e.g. `ulimit -n 1024`).
    pub async fn spawn_limited(dir: &Path, range: &str, ulimits: &str) -> EdgewakeProcess {
        let config = process_config(dir, range);
        let listeners = Listeners::free("127.0.0.1".parse().unwrap());
        let tokens = TokenEnv::test();
        EdgewakeProcess::spawn_full(dir, &config, listeners, &[], &[], tokens, Some(ulimits)).await
    }

    async fn spawn_config(dir: &Path, config_text: &str, extra: &[&str]) -> EdgewakeProcess {
        EdgewakeProcess::spawn_logging(dir, config_text, extra, "warn").await
    }

    async fn spawn_logging(
        dir: &Path,
        config_text: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> EdgewakeProcess {
        let listeners = Listeners::free("127.0.0.1".parse().unwrap());
        let env = [("RUST_LOG", rust_log)];
        EdgewakeProcess::spawn_at(dir, config_text, listeners, extra, &env).await
    }

    /// Starts `edgewake serve` with `config_text` (written to `dir`) on `listeners`,
    /// with `env` beside the test token (`RUST_LOG=warn` unless it says otherwise), and
    /// waits until its API answers.
    pub async fn spawn_at(
        dir: &Path,
        config_text: &str,
        listeners: Listeners,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> EdgewakeProcess {
        let tokens = TokenEnv::test();
        EdgewakeProcess::spawn_full(dir, config_text, listeners, extra, env, tokens, None).await
    }

    /// `spawn_at` with the API token variables of `tokens`, under `ulimits` (shell
    /// limits set before edgewake starts) if given.
    async fn spawn_full(
        dir: &Path,
        config_text: &str,
        listeners: Listeners,
        extra: &[&str],
        env: &[(&str, &str)],
        tokens: TokenEnv<'_>,
        ulimits: Option<&str>,
    ) -> EdgewakeProcess {
        let config = dir.join("edgewake.toml");
        std::fs::write(&config, config_text).unwrap();
        // Appended to: a restarted process's log follows the first one's.
        let log = dir.join("edgewake.log");
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let Listeners { http, https, api } = listeners;
        let binary = env!("CARGO_BIN_EXE_edgewake");
        let mut command = match ulimits {
            None => std::process::Command::new(binary),
            Some(ulimits) => {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &format!("{ulimits} && exec \"$0\" \"$@\""), binary]);
                sh
            }
        };
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(extra)
            .args(["--http", &http.to_string(), "--api", &api.to_string()])
            .args(["--https", &https.to_string()])
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stderr(stderr);
        for (name, value) in [
            ("EDGEWAKE_API_TOKEN", tokens.edgewake),
            ("FLY_API_TOKEN", tokens.fly),
        ] {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let child = command.spawn().unwrap();
        let process = EdgewakeProcess {
            child,
            http,
            https,
            api,
            log,
        };
        process.wait_until_serving().await;
        process
    }

    /// Waits until the API answers (with whatever status: the test may not know the token).
    async fn wait_until_serving(&self) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/v1/apps", self.api);
        wait::until_true("edgewake to serve its API", PROCESS_TIMEOUT, async || {
            client.get(&url).send().await.is_ok()
        })
        .await
    }

    /// The status of an API call made with `token`.
    pub async fn api_status(&self, token: &str) -> reqwest::StatusCode {
        let url = format!("http://{}/v1/apps", self.api);
        let res = reqwest::Client::new().get(&url).bearer_auth(token).send();
        res.await.expect("the API answers").status()
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Waits until the process has logged `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let what = format!("edgewake to log `{needle}`");
        wait::until(&what, PROCESS_TIMEOUT, async || {
            let log = self.log();
            if log.contains(needle) {
                Ok(())
            } else {
                Err(log)
            }
        })
        .await
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        let child = &mut self.child;
        let status = wait::until("edgewake to exit", PROCESS_TIMEOUT, async || {
            match child.try_wait().unwrap() {
                Some(status) => Ok(status),
                None => Err("still running"),
            }
        })
        .await;
        status.code()
    }
}

/// A test that fails must not leave its edgewake running: it would keep the test
/// runner's output pipe open (and CI waiting) for ever. Its log is shown then.
impl Drop for EdgewakeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Its machines go with it: killed alone, it would leave them running on
            // the shared machine after the test (a test that crashes edgewake on
            // purpose kills it itself first, and keeps its orphans).
            let machines = children_of(self.child.id());
            let _ = self.child.kill();
            let _ = self.child.wait();
            for pid in machines {
                kill_group(pid);
            }
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("edgewake's log ({}):\n{log}", self.log.display());
        }
    }
}

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent_of = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the name in parentheses: the state, then the parent's pid.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse::<u32>().ok()
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|pid| parent_of(pid) == Some(parent))
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Kills a machine and what it started (each machine leads its own process group).
fn kill_group(pid: i32) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// The API token variables an edgewake process is started with (`None`: not set).
#[derive(Debug, Clone, Copy)]
pub struct TokenEnv<'a> {
    pub edgewake: Option<&'a str>,
    pub fly: Option<&'a str>,
}

impl TokenEnv<'_> {
    /// The tests' own token, as `EDGEWAKE_API_TOKEN`.
    fn test() -> TokenEnv<'static> {
        TokenEnv {
            edgewake: Some(TOKEN),
            fly: None,
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
