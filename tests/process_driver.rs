//! The process driver's promises, observed from the machine's side: each start runs in
//! a fresh, empty scratch directory that is also `HOME`, with the documented
//! environment and nothing else of edgewake's; a stop ends with SIGKILL after the stop
//! timeout when the machine ignores its stop signal.

mod support;

use edgewake::config::ImageConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// Prints where it runs, what it finds there and its environment, leaves a file
/// behind, then runs the runtime.
const REPORTING_IMAGE: &str = "test/reporting";

fn with_reporting_image(config: &mut edgewake::config::Config) {
    let script = "echo \"run: cwd=$(pwd) home=$HOME files=[$(ls -A)]\"; \
                  env | sed 's/^/env: /'; \
                  touch left-behind; \
                  exec {bin_dir}/edgewake-functions";
    let image = ImageConfig {
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("CATALOG_VAR".into(), "from-catalog".into())]),
    };
    config.images.insert(REPORTING_IMAGE.into(), image);
}

/// The machine's output, once it holds `runs` reports of a start.
async fn reports(edge: &TestEdge, id: &str, runs: usize) -> String {
    let what = format!("{runs} start reports in machine {id}'s log");
    wait::until(&what, BOOT, async || {
        let (status, log) = edge.get(&machine_path(APP, id, "/logs")).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let log = log.as_str().unwrap_or_default().to_string();
        if log.matches("run: ").count() >= runs {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await
}

/// The value of `name` in the last environment the log reports.
fn env_var<'a>(log: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("env: {name}=");
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
}

/// Each start runs in a fresh, empty scratch directory, which is also `HOME`: what a run
/// left there is gone at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_gets_a_fresh_scratch_dir_as_home() {
    let edge = TestEdge::start_with(with_reporting_image).await;
    let id = edge.app_with_machine(REPORTING_IMAGE).started().await.id;
    let (status, _) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);

    let log = reports(&edge, &id, 2).await;
    let runs: Vec<&str> = log.lines().filter(|l| l.starts_with("run: ")).collect();
    let scratch = edge
        .config
        .data_dir
        .join("machines")
        .join(&id)
        .join("scratch");
    let expected = format!(
        "run: cwd={scratch} home={scratch} files=[]",
        scratch = scratch.display()
    );
    assert_eq!(runs, [expected.as_str(); 2], "{log}");
    edge.shutdown().await;
}

/// A machine's environment is the catalog entry's, the machine's `config.env`, `PORT`,
/// its address and Fly's `FLY_*` facts — and nothing else of edgewake's own beyond
/// `PATH`, `LANG` and `TZ`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_get_fly_environment_and_nothing_else() {
    let edge = TestEdge::start_with(with_reporting_image).await;
    let machine = edge.app_with_machine(REPORTING_IMAGE).started().await;
    let (id, json) = (machine.id.as_str(), &machine.json);
    let log = reports(&edge, id, 1).await;

    let private_ip = json["private_ip"].as_str().unwrap();
    let version = json["instance_id"].as_str().unwrap();
    for (name, value) in [
        ("CATALOG_VAR", "from-catalog"),
        ("APP_ENV", "production"),
        ("PORT", "8080"),
        ("HOST", private_ip),
        ("FLY_PRIVATE_IP", private_ip),
        ("FLY_MACHINE_ID", id),
        ("FLY_APP_NAME", APP),
        ("FLY_REGION", "ams"),
        ("FLY_IMAGE_REF", REPORTING_IMAGE),
        ("FLY_MACHINE_VERSION", version),
    ] {
        assert_eq!(env_var(&log, name), Some(value), "{name} in {log}");
    }
    // Cargo gives this test (and so edgewake) CARGO_* variables; machines get none.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("env: CARGO"))
        .collect();
    assert!(
        leaked.is_empty(),
        "edgewake's environment leaked: {leaked:?}"
    );
    edge.shutdown().await;
}

/// A machine that ignores its stop signal is killed (SIGKILL) once `machines.stop_timeout`
/// has passed: the stop answers, the exit event says signal 9, no process is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_after_the_stop_timeout() {
    let edge = TestEdge::start_with(|c| c.machines.stop_timeout = Duration::from_millis(300)).await;
    // Keeps serving for ten minutes after SIGTERM.
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["env"]["SHUTDOWN_DELAY_MS"] = json!("600000"))
        .started()
        .await
        .id;
    let path = machine_path(APP, &id, "/stop");
    let stop = edge.post(&path, json!({}));
    let (status, body) = tokio::time::timeout(BOOT, stop)
        .await
        .expect("the stop ends long before the machine would");
    assert_eq!(status, StatusCode::OK, "{body}");
    let machine: Value = edge.machine(APP, &id).await;
    assert_eq!(machine["state"], "stopped");
    let exit = &machine["events"][0];
    assert_eq!(exit["type"], "exit", "{machine}");
    assert_eq!(exit["request"]["exit_event"]["signal"], 9, "{machine}");
    assert!(machine_pids(&id).is_empty());
    edge.shutdown().await;
}

/// The bundled runtime started with `EXIT_WHEN_ORPHANED=1` (as every test image is)
/// exits by itself once the process that started it has ended; one started without it
/// keeps running, as a machine outliving an edgewake restart must.
#[tokio::test]
async fn the_runtime_leaves_with_its_parent_only_when_asked() {
    let runtime = env!("CARGO_BIN_EXE_edgewake-functions");
    // `sh` starts the runtime in the background, waits until it listens (it has
    // noted its parent by then), and ends: the runtime is an orphan.
    let script = "\"$0\" >\"$1\" 2>&1 & i=0; until grep -q listening \"$1\" || [ $i -ge 1000 ]; do sleep 0.01; i=$((i+1)); done; echo $!";
    let dir = tempfile::tempdir().unwrap();
    let orphan = |watch: &str| {
        let log = dir.path().join(format!("runtime-{watch}.log"));
        let out = std::process::Command::new("sh")
            .args(["-c", script, runtime, log.to_str().unwrap()])
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("EXIT_WHEN_ORPHANED", watch)
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        pid
    };
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie waiting for its new parent to reap it has ended too.
            .is_ok_and(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
    };
    let watching = orphan("1");
    let staying = orphan("");
    // Both are ended when the test ends, whatever it found (a kill of one already gone
    // does nothing).
    let _ended = Ended([watching, staying]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(watching) {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned runtime did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        alive(staying),
        "a runtime not asked to watch its parent exited with it"
    );
}

/// Kills its processes when dropped.
struct Ended([u32; 2]);

impl Drop for Ended {
    fn drop(&mut self) {
        for pid in self.0 {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}
