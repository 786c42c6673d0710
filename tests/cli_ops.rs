//! The operator CLI (`edgewake status|apps|machine …`) against a running edgewake, found
//! through FLY_API_HOSTNAME/FLY_API_TOKEN or flags.

mod support;

use edgewake::config::RegionConfig;
use reqwest::StatusCode;
use support::*;

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
    edge.cli(&["apps", "create", APP]).await.ok();
    let machine = |name: &str, region: &str| {
        let new = edge.new_machine(APP, RUNTIME_IMAGE).with("name", name);
        new.with("region", region)
    };
    let machines = [
        machine("web-ams", "ams").started().await.json,
        machine("web-lhr", "lhr").created().await.json,
    ];

    let out = edge.cli(&["status", "-a", APP]).await.ok();
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
    assert!(
        edge.cli(&["apps", "create", "first"])
            .await
            .ok()
            .contains("Created app first")
    );
    let taken = edge.cli(&["apps", "create", "first"]).await;
    assert!(!taken.succeeded());
    assert!(taken.stderr.contains("already exists"), "{}", taken.stderr);
    let list = edge.cli(&["apps", "list"]).await.ok();
    assert!(list.starts_with("NAME") && list.contains("first"), "{list}");
    edge.cli(&["apps", "destroy", "first"]).await.ok();
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
    edge.cli(&["apps", "create", APP]).await.ok();
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
    let out = edge.cli(&run).await.ok();
    let id = out
        .split_whitespace()
        .nth(2)
        .expect("id in the output")
        .to_string();
    assert!(
        edge.cli(&["machine", "wait", &id, "-a", APP])
            .await
            .ok()
            .contains("is started")
    );
    let answer: serde_json::Value = edge.request(APP, "/").await.json().await.unwrap();
    assert_eq!(answer["env"]["APP_FROM"], "cli");
    let config = &edge.machine(APP, &id).await["config"];
    assert_eq!(
        config["services"][0]["ports"].as_array().unwrap().len(),
        2,
        "{config}"
    );

    assert!(
        edge.cli(&["machine", "list", "-a", APP])
            .await
            .ok()
            .contains("cli-made")
    );
    let status = edge.cli(&["machine", "status", &id, "-a", APP]).await.ok();
    assert!(
        status.contains("State      = started") && status.contains("start"),
        "{status}"
    );
    edge.cli(&["machine", "stop", &id, "-a", APP]).await.ok();
    let waited = edge
        .cli(&[
            "machine",
            "wait",
            &id,
            "-a",
            APP,
            "--state",
            "stopped",
            "--timeout",
            "5",
        ])
        .await
        .ok();
    assert!(waited.contains("is stopped"), "{waited}");
    assert!(
        edge.cli(&["machine", "start", &id, "-a", APP])
            .await
            .ok()
            .contains("was stopped")
    );
    edge.wait_for_state(APP, &id, "started", BOOT).await;

    let refused = edge.cli(&["machine", "destroy", &id, "-a", APP]).await;
    assert!(
        !refused.succeeded() && refused.stderr.contains("pass --force"),
        "{}",
        refused.stderr
    );
    edge.cli(&["machine", "destroy", &id, "-a", APP, "--force"])
        .await
        .ok();
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
    assert!(
        edge.cli(&["machine", "logs", &id, "-a", APP])
            .await
            .ok()
            .contains("listening on")
    );

    let mut follow = edge
        .cli_command(&["machine", "logs", &id, "-a", APP, "--follow"])
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
    let missing = edge
        .cli(&["machine", "status", "00000000000000", "-a", APP])
        .await;
    assert!(
        !missing.succeeded() && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );
    let mut wrong = edge.cli_command(&["apps", "list"]);
    wrong.env("FLY_API_TOKEN", "wrong");
    let out = wrong.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));

    let url = format!("http://{}", edge.running.api_addr);
    let mut flags = edge.cli_command(&["apps", "list", "--api-url", &url, "--token", TOKEN]);
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
