//! A cluster for tests: three nats-server processes as one JetStream cluster, and
//! edgewake nodes as real `edgewake serve` processes (so SIGKILL is real), each with
//! its own config, data dir, loopback address and ports, sharing a geo database that
//! places client addresses in Sydney, Paris and Amsterdam.

use super::free_ports;
use super::geo::{AMSTERDAM, PARIS, SYDNEY, write_geo_db};
use super::{Api, EdgewakeProcess, Listeners, RUNTIME_IMAGE, SLOW_BOOT_IMAGE};
use super::{random_loopback_range, wait};
use reqwest::StatusCode;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SECRET: &str = "a-test-cluster-secret-of-some-length";
/// A node is down after this long without a heartbeat (the shortest allowed).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// The nodes' `cluster.max_backhaul_connections`: more than a test's herd needs,
/// few enough for a test to fill.
pub const MAX_BACKHAUL_CONNECTIONS: usize = 256;
/// How long the cluster may take to form, or to see a change everywhere (after all its
/// servers restart, NATS 2.9 elects the buckets' leaders again within 4 to 9 s, when
/// none of them is behind: see `NatsCluster::wait_until_caught_up`).
pub const SETTLE: Duration = Duration::from_secs(30);
/// Public addresses the geo database places in each city (sent as X-Forwarded-For by
/// a trusted peer, as a load balancer in front of the edge would).
pub const IN_SYDNEY: &str = "203.0.113.9";
pub const IN_FRANCE: &str = "198.51.100.9";
pub const IN_AMSTERDAM: &str = "192.0.2.9";

/// One nats-server of the cluster.
struct Nats {
    name: String,
    client: u16,
    route: u16,
    /// Its monitoring port (`/healthz`), on loopback as `-a` is.
    monitor: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// Three nats-server processes forming one JetStream cluster on loopback.
pub struct NatsCluster {
    servers: Vec<Nats>,
    routes: String,
}

impl NatsCluster {
    pub fn start(dir: &Path) -> NatsCluster {
        let ports: [u16; 9] = free_ports();
        let servers: Vec<Nats> = ports
            .chunks(3)
            .enumerate()
            .map(|(i, ports)| Nats {
                name: format!("nats-{i}"),
                client: ports[0],
                route: ports[1],
                monitor: ports[2],
                store: dir.join(format!("nats-{i}")),
                child: None,
            })
            .collect();
        let routes = servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.route))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = NatsCluster { servers, routes };
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster
    }

    /// The client URLs, as `[cluster].nats` lists them.
    pub fn urls(&self) -> Vec<String> {
        let url = |s: &Nats| format!("nats://127.0.0.1:{}", s.client);
        self.servers.iter().map(url).collect()
    }

    /// Starts server `i` (again), on its ports and store.
    pub fn restart(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::File::create(server.store.with_extension("log")).unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &server.client.to_string(), "-js"])
            .args(["-sd", server.store.to_str().unwrap(), "-n", &server.name])
            .args(["--cluster_name", "edgewake-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", server.route)])
            .args(["--routes", &self.routes])
            .args(["-m", &server.monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server runs (scripts/install-nats.sh installs it)");
        server.child = Some(child);
    }

    /// Waits until server `i` has caught up with the cluster: its `/healthz` says a
    /// JetStream meta leader is known and every stream and consumer it holds a copy of
    /// is current. A server killed again before that keeps stale copies, and after a
    /// restart of all three, NATS 2.9 is slow to elect leaders for them: the stale
    /// server cannot win an election, yet each of its vote requests (one every 4 to 9
    /// s) makes the two current servers wait a new 4 to 9 s before they stand, so the
    /// streams stay leaderless (puts refused with "no stream found") for as many rounds
    /// as it keeps standing first: 17 s measured, past 30 s at times.
    pub async fn wait_until_caught_up(&self, i: usize) {
        let server = &self.servers[i];
        let url = format!("http://127.0.0.1:{}/healthz", server.monitor);
        let what = format!("{} to catch up with the cluster", server.name);
        wait::until(&what, SETTLE, async || {
            let answer = reqwest::get(&url).await.map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = answer.text().await.unwrap_or_default();
            match status {
                StatusCode::OK => Ok(()),
                _ => Err(format!("{status} {body}")),
            }
        })
        .await
    }

    /// Kills server `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every server at once, as a power cut would: all are sent SIGKILL before
    /// any is waited for, so no write reaches the others after the first died (one
    /// left behind would slow the elections after a restart: see
    /// `wait_until_caught_up`).
    pub fn kill_all(&mut self) {
        let mut children: Vec<Child> = self
            .servers
            .iter_mut()
            .filter_map(|s| s.child.take())
            .collect();
        for child in &mut children {
            let _ = child.kill();
        }
        for mut child in children {
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// One edgewake node of the cluster, in a process of its own.
pub struct Node {
    pub name: String,
    pub region: String,
    pub listeners: Listeners,
    pub backhaul: SocketAddr,
    dir: PathBuf,
    config: String,
    env: Vec<(String, String)>,
    process: Option<EdgewakeProcess>,
    client: reqwest::Client,
    api: Api,
}

impl Node {
    /// Starts node `name` in `region`, on a loopback address of its own, with the
    /// NATS servers at `nats`.
    pub async fn start(dir: &Path, name: &str, region: &str, nats: &[String]) -> Node {
        Node::start_with(dir, name, region, nats, &[]).await
    }

    /// `start` with more environment for the process (`TOKIO_WORKER_THREADS`, ...).
    pub async fn start_with(
        dir: &Path,
        name: &str,
        region: &str,
        nats: &[String],
        env: &[(&str, &str)],
    ) -> Node {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = node_ip();
        let [http, https, api, backhaul] = free_ports();
        let listeners = Listeners::at(ip, [http, https, api]);
        let backhaul = SocketAddr::new(ip, backhaul);
        let config = node_config(&dir, name, region, nats, backhaul);
        let mut node = Node {
            name: name.to_string(),
            region: region.to_string(),
            listeners,
            backhaul,
            dir,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            process: None,
            client: reqwest::Client::new(),
            api: Api::new(reqwest::Client::new(), listeners.api),
        };
        node.restart().await;
        node
    }

    /// Starts the node again on its data dir, addresses and config.
    pub async fn restart(&mut self) {
        let mut env = vec![
            ("EDGEWAKE_CLUSTER_SECRET", SECRET),
            ("RUST_LOG", "warn,edgewake::cluster=info"),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process =
            EdgewakeProcess::spawn_at(&self.dir, &self.config, self.listeners, &[], &env).await;
        self.process = Some(process);
    }

    /// Kills the node at once (SIGKILL): no goodbye to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }

    /// Stops the node as an operator would (SIGTERM) and waits for it: its machines
    /// stop with it, where a kill (or dropping the node) leaves them running.
    pub async fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.signal("TERM");
            process.exit_code().await;
        }
    }

    /// The node's process id (its machines are its children).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the node runs").child.id()
    }

    /// A request through this node's edge to `<app>.localhost`, from a client at
    /// `client_ip` (X-Forwarded-For from a trusted peer).
    pub fn request(&self, app: &str, path: &str, client_ip: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("http://{}{path}", self.listeners.http))
            .header("host", format!("{app}.localhost"))
            .header("x-forwarded-for", client_ip)
    }

    /// Waits until this node's view shows the machine in `state`.
    pub async fn wait_for_state(&self, app: &str, id: &str, state: &str) -> Value {
        let path = format!("/v1/apps/{app}/machines/{id}");
        let what = format!("machine {id} to be {state} on {}", self.name);
        wait::until(&what, SETTLE, async || match self.get(&path).await {
            (StatusCode::OK, machine) if machine["state"] == state => Ok(machine),
            (status, body) => Err(format!("{status} {body}")),
        })
        .await
    }

    /// What the node has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("edgewake.log")).unwrap_or_default()
    }

    /// `edgewake cluster status --json` for this node's config, or what it said when
    /// it failed.
    pub fn status(&self) -> Result<Value, String> {
        let output = Command::new(env!("CARGO_BIN_EXE_edgewake"))
            .args(["cluster", "status", "--json", "--config"])
            .arg(self.dir.join("edgewake.toml"))
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        match output.status.success() {
            true => Ok(serde_json::from_slice(&output.stdout).unwrap()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }
}

/// A node's Machines API: `node.get(...)`, `node.post(...)`.
impl std::ops::Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Waits until every node's heartbeat is seen as up by `node`'s cluster.
pub async fn wait_until_formed(node: &Node, count: usize) {
    wait::until("the cluster to form", SETTLE, async || {
        let status = node.status()?;
        let nodes = status.as_array().cloned().unwrap_or_default();
        let up = nodes.iter().filter(|n| n["up"] == true).count();
        if up == count {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await
}

/// A loopback address no other node of this test binary has (so two nodes starting
/// at once cannot both take a port that was free on it a moment ago).
fn node_ip() -> IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 250, "out of node addresses");
    format!("127.0.{}.1", 2 + n).parse().unwrap()
}

fn node_config(
    dir: &Path,
    name: &str,
    region: &str,
    nats: &[String],
    backhaul: SocketAddr,
) -> String {
    let geo = dir.join("geo.mmdb");
    write_geo_db(&geo);
    let nats: Vec<String> = nats.iter().map(|url| format!("\"{url}\"")).collect();
    let regions: String = [("ams", AMSTERDAM), ("syd", SYDNEY), ("cdg", PARIS)]
        .iter()
        .map(|(code, (lat, lon))| {
            format!("[[regions]]\ncode = \"{code}\"\nlatitude = {lat}\nlongitude = {lon}\n")
        })
        .collect();
    format!(
        r#"
data_dir = "{data}"
[tls]
certs_dir = "{certs}"
[edge]
region = "{region}"
idle_timeout = "60s"
wake_timeout = "10s"
trusted_proxies = ["127.0.0.0/8"]
[geo]
ipv4_db = "{geo}"
[machines]
private_ip_range = "{range}"
stop_timeout = "2s"
[cluster]
node = "{name}"
nats = [{nats}]
backhaul = "{backhaul}"
heartbeat_timeout = "{timeout}s"
max_backhaul_connections = {MAX_BACKHAUL_CONNECTIONS}
{regions}
[images."{RUNTIME_IMAGE}"]
command = ["{{bin_dir}}/edgewake-functions"]
[images."{SLOW_BOOT_IMAGE}"]
command = ["{{bin_dir}}/edgewake-functions"]
env = {{ STARTUP_DELAY_MS = "300" }}
"#,
        data = dir.join("data").display(),
        certs = dir.join("certs").display(),
        geo = geo.display(),
        range = random_loopback_range(),
        nats = nats.join(", "),
        timeout = HEARTBEAT_TIMEOUT.as_secs(),
    )
}
