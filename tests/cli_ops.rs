//! The operator CLI (`edgewake status|apps|machine …`) against a running edgewake, found
//! through FLY_API_HOSTNAME/FLY_API_TOKEN or flags.

mod support;

use edgewake::config::RegionConfig;
use reqwest::StatusCode;
use support::*;

/// What a CLI run printed and how it ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `edgewake ARGS` with Fly's environment pointing at `edge`.
async fn cli(edge: &TestEdge, args: &[&str]) -> Run {
    let out = command(edge, args).output().await.unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn command(edge: &TestEdge, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgewake"));
    command
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("EDGEWAKE_API_URL")
        .env_remove("EDGEWAKE_API_TOKEN")
        .env_remove("FLY_APP")
        .env("FLY_API_HOSTNAME", edge.running.api_addr.to_string())
        .env("FLY_API_TOKEN", TOKEN);
    command
}

/// Asserts success and returns stdout.
fn ok(run: Run) -> String {
    assert!(run.ok, "failed: {}", run.stderr);
    run.stdout
}

/// `status` prints the app, then a table whose ID, NAME, REGION, STATE and CREATED
/// columns line up over each of two machines in two regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_app_and_machines_table() {
    let edge = TestEdge::start_with(|c| {
        c.regions.push(RegionConfig {
            code: "lhr".into(),
            name: "London".into(),
            latitude: 51.5,
            longitude: -0.1,
        })
    })
    .await;
    ok(cli(&edge, &["apps", "create", APP]).await);
    let machine = |name: &str, region: &str| {
        let new = edge.new_machine(APP, RUNTIME_IMAGE).with("name", name);
        new.with("region", region)
    };
    let machines = [
        machine("web-ams", "ams").started().await.json,
        machine("web-lhr", "lhr").created().await.json,
    ];

    let out = ok(cli(&edge, &["status", "-a", APP]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "App", "{out}");
    assert_eq!(lines[1], format!("  Name     = {APP}"), "{out}");
    assert_eq!(lines[2], "  Owner    = personal", "{out}");
    let table_at = lines
        .iter()
        .position(|l| *l == "Machines")
        .expect("Machines heading");
    let header = lines[table_at + 1];
    let columns = ["ID", "NAME", "REGION", "STATE", "CREATED"];
    let starts: Vec<usize> = columns.iter().map(|c| header.find(c).expect(c)).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{header}");
    let rows = &lines[table_at + 2..];
    assert_eq!(rows.len(), 2, "{out}");
    for (row, machine) in rows.iter().zip(&machines) {
        let state = if machine["region"] == "lhr" {
            "created"
        } else {
            "started"
        };
        let expected = [
            text(machine, "id"),
            text(machine, "name"),
            text(machine, "region"),
            state.into(),
            text(machine, "created_at"),
        ];
        for (start, value) in starts.iter().zip(&expected) {
            assert!(
                row[*start..].starts_with(value.as_str()),
                "`{value}` not under its header in:\n{out}"
            );
        }
    }
    edge.shutdown().await;
}

fn text(value: &serde_json::Value, field: &str) -> String {
    value[field].as_str().unwrap().to_string()
}

/// apps create, list and destroy; creating a taken name fails with the API's message
/// and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_create_list_destroy() {
    let edge = TestEdge::start().await;
    assert!(ok(cli(&edge, &["apps", "create", "first"]).await).contains("Created app first"));
    let taken = cli(&edge, &["apps", "create", "first"]).await;
    assert!(!taken.ok);
    assert!(taken.stderr.contains("already exists"), "{}", taken.stderr);
    let list = ok(cli(&edge, &["apps", "list"]).await);
    assert!(list.starts_with("NAME") && list.contains("first"), "{list}");
    ok(cli(&edge, &["apps", "destroy", "first"]).await);
    let (status, _) = edge.get("/v1/apps/first").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// machine run (with env and ports), wait, list, status, stop, start and destroy — the
/// machine serves through the edge with the env given, and destroying a running
/// machine without --force fails with the API's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_commands_drive_a_machine() {
    let edge = TestEdge::start().await;
    ok(cli(&edge, &["apps", "create", APP]).await);
    let run = [
        "machine",
        "run",
        RUNTIME_IMAGE,
        "-a",
        APP,
        "--name",
        "cli-made",
        "--env",
        "APP_FROM=cli",
        "--port",
        "80:8080/tcp:http",
        "--port",
        "443:8080/tcp:tls:http",
    ];
    let out = ok(cli(&edge, &run).await);
    let id = out
        .split_whitespace()
        .nth(2)
        .expect("id in the output")
        .to_string();
    assert!(ok(cli(&edge, &["machine", "wait", &id, "-a", APP]).await).contains("is started"));
    let answer: serde_json::Value = edge.request(APP, "/").await.json().await.unwrap();
    assert_eq!(answer["env"]["APP_FROM"], "cli");
    let config = &edge.machine(APP, &id).await["config"];
    assert_eq!(
        config["services"][0]["ports"].as_array().unwrap().len(),
        2,
        "{config}"
    );

    assert!(ok(cli(&edge, &["machine", "list", "-a", APP]).await).contains("cli-made"));
    let status = ok(cli(&edge, &["machine", "status", &id, "-a", APP]).await);
    assert!(
        status.contains("State      = started") && status.contains("start"),
        "{status}"
    );
    ok(cli(&edge, &["machine", "stop", &id, "-a", APP]).await);
    let waited = ok(cli(
        &edge,
        &[
            "machine",
            "wait",
            &id,
            "-a",
            APP,
            "--state",
            "stopped",
            "--timeout",
            "5",
        ],
    )
    .await);
    assert!(waited.contains("is stopped"), "{waited}");
    assert!(ok(cli(&edge, &["machine", "start", &id, "-a", APP]).await).contains("was stopped"));
    edge.wait_for_state(APP, &id, "started", BOOT).await;

    let refused = cli(&edge, &["machine", "destroy", &id, "-a", APP]).await;
    assert!(
        !refused.ok && refused.stderr.contains("pass --force"),
        "{}",
        refused.stderr
    );
    ok(cli(&edge, &["machine", "destroy", &id, "-a", APP, "--force"]).await);
    assert!(edge.get(&machine_path(APP, &id, "")).await.0 == StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// machine logs prints the output; with --follow it keeps printing until the machine
/// is destroyed, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_logs_and_follow() {
    use tokio::io::AsyncReadExt;
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    assert!(ok(cli(&edge, &["machine", "logs", &id, "-a", APP]).await).contains("listening on"));

    let mut follow = command(&edge, &["machine", "logs", &id, "-a", APP, "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(BOOT, stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "logs --follow ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    edge.delete(&machine_path(APP, &id, "?force=true")).await;
    let status = tokio::time::timeout(BOOT, follow.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success());
    edge.shutdown().await;
}

/// Errors print the API's message and exit non-zero: an unknown machine, a wrong token;
/// --api-url and --token flags work in place of the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_api_message() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let missing = cli(&edge, &["machine", "status", "00000000000000", "-a", APP]).await;
    assert!(
        !missing.ok && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );
    let mut wrong = command(&edge, &["apps", "list"]);
    wrong.env("FLY_API_TOKEN", "wrong");
    let out = wrong.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));

    let url = format!("http://{}", edge.running.api_addr);
    let mut flags = command(
        &edge,
        &["apps", "list", "--api-url", &url, "--token", TOKEN],
    );
    flags
        .env("FLY_API_HOSTNAME", "127.0.0.1:1")
        .env_remove("FLY_API_TOKEN");
    let out = flags.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(APP));
    edge.shutdown().await;
}
