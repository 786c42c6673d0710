//! The CLI's flyctl habits against a real edgewake: aliases, `-j` and `-q`, machines by
//! id or name, `machine run -p 8080`, restart, update, exec, cordon, clone, leases, the
//! `--force` wording, `logs -a`, the catalog hint and shell completions.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// `m run -p 8080` makes a machine the edge serves on port 80; `app`/`apps`,
/// `machines`/`m` and `ls` are aliases; `-j` prints the API's JSON and `-q` ids (or
/// names) only; a machine is found by its name as well as its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_json_quiet_and_names() {
    let edge = TestEdge::start().await;
    edge.cli(&["app", "create", APP]).await.ok();
    let run = [
        "m",
        "run",
        RUNTIME_IMAGE,
        "-a",
        APP,
        "--name",
        "web",
        "-p",
        "8080",
    ];
    edge.cli(&run).await.ok();
    let apps = edge.cli(&["apps", "ls", "-j"]).await.json();
    assert_eq!(apps["apps"][0]["name"], APP, "{apps}");
    assert_eq!(
        edge.cli(&["apps", "ls", "-q"]).await.ok(),
        format!("{APP}\n")
    );

    let listed = edge.cli(&["machines", "ls", "-a", APP, "-j"]).await.json();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        edge.cli(&["m", "list", "-a", APP, "-q"]).await.ok(),
        format!("{id}\n")
    );
    let by_name = edge
        .cli(&["machine", "status", "web", "-a", APP, "-j"])
        .await
        .json();
    assert_eq!(by_name["id"], id.as_str());
    let ports = &by_name["config"]["services"][0]["ports"];
    assert_eq!(by_name["config"]["services"][0]["internal_port"], 8080);
    assert_eq!(ports.as_array().unwrap().len(), 2, "80 and 443: {ports}");
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);

    let status = edge.cli(&["status", "-a", APP, "-j"]).await.json();
    assert_eq!(status["name"], APP);
    assert_eq!(status["machines"][0]["id"], id.as_str());
    let missing = edge.cli(&["m", "status", "nobody", "-a", APP]).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("machine `nobody` not found"),
        "{}",
        missing.stderr
    );
    edge.shutdown().await;
}

/// restart, update (env, memory), exec (output and exit code passed on), cordon and
/// uncordon, clone, leases view, and a destroy refused with `--force` named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_operations() {
    let edge = TestEdge::start().await;
    let id = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let name = edge.machine(APP, &id).await["name"]
        .as_str()
        .unwrap()
        .to_string();

    edge.cli(&["m", "restart", &name, "-a", APP]).await.ok();
    assert_eq!(count_events(&edge.machine(APP, &id).await, "restart"), 1);

    let update = [
        "m",
        "update",
        &id,
        "-a",
        APP,
        "-e",
        "APP_GREETING=hi",
        "--vm-memory",
        "512",
    ];
    assert!(edge.cli(&update).await.ok().contains("Updated machine"));
    let machine = edge.wait_for_state(APP, &id, "started", BOOT).await;
    assert_eq!(machine["config"]["env"]["APP_GREETING"], "hi");
    assert_eq!(
        machine["config"]["env"]["APP_ENV"], "production",
        "other env kept"
    );
    assert_eq!(machine["config"]["guest"]["memory_mb"], 512);
    let answer: Value = edge.request(APP, "/").await.json().await.unwrap();
    assert_eq!(answer["env"]["APP_GREETING"], "hi");

    let exec = [
        "m",
        "exec",
        &id,
        "-a",
        APP,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ];
    let ran = edge.cli(&exec).await;
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (Some(7), "out\n", "err\n")
    );

    edge.cli(&["m", "cordon", &id, "-a", APP]).await.ok();
    assert_eq!(edge.machine(APP, &id).await["cordoned"], true);
    edge.cli(&["m", "uncordon", &id, "-a", APP]).await.ok();
    assert_eq!(edge.machine(APP, &id).await["cordoned"], false);

    let cloned = edge
        .cli(&["m", "clone", &id, "-a", APP, "--name", "twin"])
        .await
        .ok();
    assert!(cloned.contains("twin"), "{cloned}");
    let listed = edge.cli(&["m", "ls", "-a", APP, "-j"]).await.json();
    let twin = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "twin")
        .unwrap();
    assert_eq!(twin["config"]["env"]["APP_GREETING"], "hi");

    let none = edge
        .cli(&["m", "leases", "view", &id, "-a", APP])
        .await
        .ok();
    assert!(none.contains("has no lease"), "{none}");
    let lease = json!({"ttl": 60, "description": "deploying"});
    let (status, _) = edge.post(&machine_path(APP, &id, "/lease"), lease).await;
    assert_eq!(status, StatusCode::OK, "a new lease is 200, as Fly answers");
    let shown = edge
        .cli(&["m", "leases", "view", &id, "-a", APP])
        .await
        .ok();
    assert!(
        shown.contains("OWNER") && shown.contains("deploying"),
        "{shown}"
    );

    let refused = edge.cli(&["m", "rm", "twin", "-a", APP]).await;
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("--force") && !refused.stderr.contains("force=true"),
        "{}",
        refused.stderr
    );
    edge.cli(&["m", "destroy", "twin", "-a", APP, "--force"])
        .await
        .ok();
    edge.shutdown().await;
}

/// `logs -a APP` follows every machine of the app, those created after it started
/// included, each line stamped with an RFC 3339 time, the machine and its region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_logs_follow_every_machine() {
    use tokio::io::AsyncBufReadExt;
    let edge = TestEdge::start().await;
    let first = edge.app_with_machine(RUNTIME_IMAGE).started().await.id;
    let mut logs = edge
        .cli_command(&["logs", "-a", APP])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(logs.stdout.take().unwrap()).lines();
    let mut notes = tokio::io::BufReader::new(logs.stderr.take().unwrap()).lines();
    let attached = tokio::time::timeout(BOOT, notes.next_line()).await.unwrap();
    assert!(
        attached
            .unwrap()
            .unwrap()
            .starts_with("Following 1 machine")
    );
    let second = edge.new_machine(APP, RUNTIME_IMAGE).started().await.id;
    edge.post(&machine_path(APP, &first, "/restart"), json!({}))
        .await;
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let line = tokio::time::timeout(BOOT, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("logs still running");
        let mut words = line.split(' ');
        let (time, source, region) = (words.next().unwrap(), words.next().unwrap(), words.next());
        assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
        assert_eq!(region, Some("ams"), "{line}");
        if line.contains("listening") && !heard.contains(&source.to_string()) {
            heard.push(source.to_string());
        }
    }
    heard.sort();
    let mut expected = vec![format!("app[{first}]"), format!("app[{second}]")];
    expected.sort();
    assert_eq!(heard, expected);
    let told = edge.cli(&["logs", "-a", APP, "--no-tail"]).await.ok();
    let prefix = format!("app[{second}] ams ");
    assert!(
        told.lines()
            .any(|l| l.starts_with(&prefix) && l.contains("listening")),
        "{told}"
    );
    edge.shutdown().await;
}

/// An image the process driver does not know answers with the way forward: a catalog
/// entry to add, or the sandbox driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_image_shows_the_catalog_hint() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let run = edge
        .cli(&["m", "run", "me/my-server", "-a", APP, "-p", "8080"])
        .await;
    assert_eq!(run.code, Some(1));
    for needle in [
        "[images.\"me/my-server\"] command =",
        "$PORT",
        "--driver sandbox",
    ] {
        assert!(
            run.stderr.contains(needle),
            "missing {needle} in {}",
            run.stderr
        );
    }
    edge.shutdown().await;
}

/// `completion bash|zsh|fish` prints a script that completes edgewake's commands.
#[test]
fn shell_completions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewake"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("edgewake") && script.contains("uncordon"),
            "{shell}"
        );
    }
}
