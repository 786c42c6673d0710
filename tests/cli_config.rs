//! The operator's first hour with a real `edgewake serve` process: the config found from
//! any directory (./config, EDGEWAKE_CONFIG, --config) by the server and the CLI alike,
//! `edgewake reload` changing a running server's idle timeout and refusing a broken
//! file, one server per data dir, and output fit for a file (no colour, no backtrace).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cli::{self, Run};
use support::{free_port, random_loopback_range, wait};

const DEADLINE: Duration = Duration::from_secs(15);

/// A config file in its own directory, with paths relative to it.
struct Site {
    dir: tempfile::TempDir,
    api: SocketAddr,
    http: SocketAddr,
    range: String,
}

impl Site {
    fn new() -> Site {
        let port = || format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            api: port(),
            http: port(),
            range: random_loopback_range(),
        };
        site.write_config("info", "60s", "");
        site
    }

    /// The site's config, under `config/edgewake.toml`, logging at `level`, with `extra`
    /// lines in [edge].
    fn write_config(&self, level: &str, idle: &str, extra: &str) {
        let text = format!(
            r#"data_dir = "../state"
log_level = "{level}"
[edge]
http = "{http}"
https = "127.0.0.1:{https}"
idle_timeout = "{idle}"
reap_interval = "50ms"
{extra}
[api]
listen = "{api}"
[tls]
certs_dir = "../certs"
[machines]
private_ip_range = "{range}"
stop_timeout = "2s"
[images."flyio/fastify-functions"]
command = ["{{bin_dir}}/edgewake", "functions"]
"#,
            http = self.http,
            https = free_port(),
            api = self.api,
            range = self.range,
        );
        std::fs::create_dir_all(self.dir.path().join("config")).unwrap();
        std::fs::write(self.config(), text).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config/edgewake.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

/// `edgewake ARGS` run in `cwd` with `env` (and nothing else pointing it elsewhere).
fn edgewake(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = cli::edgewake(cwd, args);
    command.envs(env.iter().copied());
    command
}

fn output(mut command: Command) -> (bool, String, String) {
    let run = Run::of(command.output().unwrap());
    (run.succeeded(), run.stdout, run.stderr)
}

/// A running `edgewake serve`, its stderr going to a file the test reads.
struct Server {
    child: Child,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    async fn start(mut command: Command, api: SocketAddr) -> Server {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = command.stderr(Stdio::from(file)).spawn().unwrap();
        let server = Server {
            child,
            log,
            _log_dir: log_dir,
        };
        // Logged once every listener is bound.
        server
            .until(
                |log| log.contains("edgewake is serving"),
                "edgewake to serve",
            )
            .await;
        assert!(std::net::TcpStream::connect(api).is_ok(), "the API listens");
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log shows `ready`.
    async fn until(&self, ready: impl Fn(&str) -> bool, what: &str) {
        wait::until(what, DEADLINE, async || {
            let log = self.log();
            if ready(&log) { Ok(()) } else { Err(log) }
        })
        .await
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> Option<i32> {
        self.signal("-TERM");
        let child = &mut self.child;
        let status = wait::until("edgewake to exit", DEADLINE, async || {
            child.try_wait().unwrap().ok_or("still running")
        })
        .await;
        status.code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the CLI's `machine status -j` until the machine is in `state`.
async fn until_state(cwd: &Path, env: &[(&str, &str)], machine: &str, state: &str) {
    let args = ["machine", "status", machine, "-a", "web", "-j"];
    wait::until(&format!("{machine} {state}"), DEADLINE, async || {
        let (ok, out, err) = output(edgewake(cwd, &args, env));
        assert!(ok, "{err}");
        let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
        if shown["state"] == state {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await
}

/// Started in the directory that holds `config/edgewake.toml`, the server says which
/// file it read and keeps its state where the file says (relative to the file); the CLI,
/// run from anywhere else with EDGEWAKE_CONFIG or --config, finds the API and the token
/// from that file, and `images` uses the same data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_found_from_anywhere() {
    let site = Site::new();
    let server = Server::start(edgewake(site.dir.path(), &["serve"], &[]), site.api).await;
    assert!(
        server
            .log()
            .contains("config config/edgewake.toml (from the current directory)"),
        "{}",
        server.log()
    );
    assert!(site.data_dir().join("api-token").exists());
    assert!(!site.dir.path().join("data").exists());

    let elsewhere = tempfile::tempdir().unwrap();
    let config = site.config();
    let config = config.to_str().unwrap();
    let env = [("EDGEWAKE_CONFIG", config)];
    let (ok, out, err) = output(edgewake(elsewhere.path(), &["apps", "create", "web"], &env));
    assert!(ok && out.contains("Created app web"), "{out}{err}");
    let flag = ["--config", config, "apps", "list", "-q"];
    let (ok, out, err) = output(edgewake(elsewhere.path(), &flag, &[]));
    assert!(ok && out.trim() == "web", "{out}{err}");
    let (ok, _, err) = output(edgewake(elsewhere.path(), &["images", "ls"], &env));
    assert!(ok, "{err}");
    let (ok, out, _) = output(edgewake(elsewhere.path(), &["check-config"], &env));
    assert!(ok && out.contains("(from $EDGEWAKE_CONFIG): ok"), "{out}");
    assert!(!elsewhere.path().join("data").exists(), "no stray ./data");

    let (ok, _, err) = output(edgewake(elsewhere.path(), &["apps", "list"], &[]));
    assert!(
        !ok && err.contains("no API token") && err.contains("EDGEWAKE_CONFIG"),
        "{err}"
    );
    assert_eq!(server.stop().await, Some(0));
}

/// Without any config file the server says loudly that it runs on built-in defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_config_is_said_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (http, https) = (free_port().to_string(), free_port().to_string());
    let args = [
        "serve",
        "--http",
        &format!("127.0.0.1:{http}"),
        "--https",
        &format!("127.0.0.1:{https}"),
        "--api",
        &api.to_string(),
        "--data-dir",
        "state",
    ];
    let server = Server::start(edgewake(dir.path(), &args, &[]), api).await;
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("no config file") && log.contains("built-in defaults"),
        "{log}"
    );
    assert_eq!(server.stop().await, Some(0));
}

/// `edgewake reload` makes a running server take a new idle timeout (its machine is
/// then stopped after 1 s instead of 60 s) and names a listener change it keeps; a
/// broken file is refused by `reload` itself (nothing sent) and, signalled directly,
/// by the server, which keeps every setting (the machine still stops after 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_idle_timeout_and_refuses_broken_file() {
    let site = Site::new();
    let config = site.config();
    let env = [("EDGEWAKE_CONFIG", config.to_str().unwrap())];
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start(edgewake(cwd.path(), &["serve"], &env), site.api).await;
    let run = |args: &[&str]| output(edgewake(cwd.path(), args, &env));
    assert!(run(&["apps", "create", "web"]).0);
    let image = "flyio/fastify-functions";
    let (ok, _, err) = run(&["m", "run", image, "-a", "web", "--name", "m1", "-p", "8080"]);
    assert!(ok, "{err}");
    until_state(cwd.path(), &env, "m1", "started").await;

    assert!(!server.log().contains("DEBUG"), "{}", server.log());
    site.write_config("info,edgewake=debug", "1s", "http_service_port = 8080");
    let (ok, out, err) = run(&["reload"]);
    assert!(ok && out.contains("Sent SIGHUP"), "{out}{err}");
    server
        .until(
            |log| log.contains("edge.idle_timeout: 60s → 1s"),
            "reloaded",
        )
        .await;
    // The new log level shows debug lines: a request for an unknown app.
    let unknown = format!("http://{}/", site.http);
    let client = reqwest::Client::new();
    client
        .get(&unknown)
        .header("host", "nobody.localhost")
        .send()
        .await
        .unwrap();
    server
        .until(|log| log.contains("DEBUG"), "a debug line")
        .await;
    assert!(
        server
            .log()
            .contains("`edge.http_service_port` changed in the file"),
        "{}",
        server.log()
    );
    until_state(cwd.path(), &env, "m1", "stopped").await;

    std::fs::write(&config, "[edge]\nidle_timeout = \"soon\"\n").unwrap();
    let (ok, _, err) = run(&["reload"]);
    assert!(!ok && err.contains("`edge.idle_timeout`: `soon`"), "{err}");
    server.signal("-HUP");
    server
        .until(
            |log| log.contains("reload refused, nothing changed"),
            "refused",
        )
        .await;
    // The CLI can no longer read the file: it is told where the API is.
    let token = std::fs::read_to_string(site.data_dir().join("api-token")).unwrap();
    let api = site.api.to_string();
    let env = [
        ("FLY_API_HOSTNAME", api.as_str()),
        ("FLY_API_TOKEN", token.trim()),
    ];
    let start = output(edgewake(
        cwd.path(),
        &["m", "start", "m1", "-a", "web"],
        &env,
    ));
    assert!(start.0, "{}", start.2);
    until_state(cwd.path(), &env, "m1", "started").await;
    until_state(cwd.path(), &env, "m1", "stopped").await;
    assert_eq!(server.stop().await, Some(0));
}

/// A second server on the same data dir is refused, naming the first one's pid;
/// `reload` with no server running says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_per_data_dir() {
    let site = Site::new();
    let config = site.config();
    let env = [("EDGEWAKE_CONFIG", config.to_str().unwrap())];
    let server = Server::start(edgewake(site.dir.path(), &["serve"], &env), site.api).await;
    let other = [
        "serve",
        "--http",
        &format!("127.0.0.1:{}", free_port()),
        "--https",
        &format!("127.0.0.1:{}", free_port()),
        "--api",
        &format!("127.0.0.1:{}", free_port()),
    ];
    let (ok, _, err) = output(edgewake(site.dir.path(), &other, &env));
    let pid = server.child.id().to_string();
    assert!(
        !ok && err.contains("another edgewake") && err.contains(&pid),
        "{err}"
    );
    assert_eq!(server.stop().await, Some(0));
    let (ok, _, err) = output(edgewake(site.dir.path(), &["reload"], &env));
    assert!(!ok && err.contains("no edgewake is serving"), "{err}");
}

/// A log written to a file (stderr not a terminal) has no colour escape codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_log_has_no_escape_codes() {
    let site = Site::new();
    let server = Server::start(edgewake(site.dir.path(), &["serve"], &[]), site.api).await;
    let log = server.log();
    assert!(
        log.contains("INFO") && log.contains("edgewake is serving"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "escape codes in: {log:?}");
    assert_eq!(server.stop().await, Some(0));
}

/// A bad config stops `serve` with one message naming every problem and exit code 1:
/// no backtrace, even with RUST_BACKTRACE=1, and nothing written to the data dir.
#[test]
fn config_error_prints_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "data_dir = \"d\"\n[edge]\nidle_timeout = \"4\"\ncolour = 1\n",
    )
    .unwrap();
    let args = ["serve", "--config", path.to_str().unwrap()];
    let mut command = edgewake(dir.path(), &args, &[("RUST_BACKTRACE", "1")]);
    let out = command.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("Error: "), "{err}");
    assert!(
        err.contains("`edge.idle_timeout`: `4`") && err.contains("`edge.colour`"),
        "{err}"
    );
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert!(!dir.path().join("d").exists());
}

/// A client following a machine's log does not hold shutdown for the drain timeout
/// (60 s here): the follow ends when shutdown begins, and the server exits 0 at once
/// after (within the test's 15 s deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_log_does_not_hold_shutdown() {
    let site = Site::new();
    site.write_config("info", "60s", "drain_timeout = \"60s\"");
    let config = site.config();
    let env = [("EDGEWAKE_CONFIG", config.to_str().unwrap())];
    let cwd = site.dir.path();
    let server = Server::start(edgewake(cwd, &["serve"], &env), site.api).await;
    assert!(output(edgewake(cwd, &["apps", "create", "web"], &env)).0);
    let run = [
        "m",
        "run",
        "flyio/fastify-functions",
        "-a",
        "web",
        "--name",
        "m1",
    ];
    assert!(output(edgewake(cwd, &run, &env)).0);
    until_state(cwd, &env, "m1", "started").await;
    let mut follow = edgewake(cwd, &["m", "logs", "m1", "-a", "web", "-f"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(follow.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(
        first.contains("listening"),
        "the follow is under way: {first}"
    );
    assert_eq!(server.stop().await, Some(0));
    let followed = follow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&followed.stderr);
    assert!(followed.status.success(), "{:?} {err}", followed.status);
}
