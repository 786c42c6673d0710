//! The sandbox driver with the real runtime (runc), real images built here and a real
//! registry: machines wake through the edge, start on a clean layer, and hostile code
//! is held by the limits and walls. Needs root, runc, umoci, skopeo, docker-registry
//! and busybox-static (`.ci/run` installs them).

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::images::Registry;
use support::sandbox::{import_test_image, push_test_image, sandboxed};
use support::{APP, BOOT, Machine, TestEdge, machine_path, machine_pids, machines_path, wait};

/// The test image, as imported into each test's store.
const IMAGE: &str = "edgewake.test/functions:1";
/// How long a machine may take to fill its memory and be killed for it.
const OOM_KILL: Duration = Duration::from_secs(20);

async fn sandbox_edge() -> TestEdge {
    TestEdge::start_with(|config| {
        sandboxed(config);
        import_test_image(&config.data_dir, IMAGE);
    })
    .await
}

/// Runs `script` with busybox sh inside the machine, through Fly's exec call.
async fn exec(edge: &TestEdge, app: &str, id: &str, script: &str) -> Value {
    let body = json!({"command": ["sh", "-c", script], "timeout": 20});
    let (status, output) = edge.post(&machine_path(app, id, "/exec"), body).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    output
}

/// What the machine's exit event says (`request.exit_event`).
fn exit_event(machine: &Value) -> &Value {
    let exit = machine["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "exit")
        .unwrap_or_else(|| panic!("no exit event: {machine}"));
    &exit["request"]["exit_event"]
}

/// A machine's address and the host end of its link (its /24's first address).
async fn address_and_gateway(edge: &TestEdge, id: &str) -> (String, String) {
    let machine = edge.machine(APP, id).await;
    let ip = machine["private_ip"].as_str().unwrap().to_string();
    let gateway = ip.rsplit_once('.').unwrap().0.to_string() + ".1";
    (ip, gateway)
}

fn stdout(output: &Value) -> &str {
    output["stdout"].as_str().unwrap()
}

/// An image pushed to a registry on loopback is pulled at create, and a request through
/// the edge wakes its stopped machine and gets the machine's own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_image_wakes_through_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), None);
    let image = push_test_image(&registry, "functions", "v1");
    let edge = TestEdge::start_with(sandboxed).await;
    let id = &edge.app_with_machine(&image).created().await.id;
    let response = edge.request(APP, "/hello").await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["machine_id"], id.as_str());
    assert_eq!(answer["path"], "/hello");
    let machine = edge.machine(APP, id).await;
    assert_eq!(machine["state"], "started");
    assert!(
        machine["private_ip"]
            .as_str()
            .unwrap()
            .starts_with("172.30.")
    );
    edge.shutdown().await;
}

/// The image config applies (entrypoint, env, workdir) and a file the machine writes
/// is gone after a stop and a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_gone_after_stop_and_start() {
    let edge = sandbox_edge().await;
    let id = edge.app_with_machine(IMAGE).started().await.id;
    let output = exec(
        &edge,
        APP,
        &id,
        "pwd; echo $IMAGE_ENV; echo kept > /tmp/note; cat /tmp/note",
    )
    .await;
    assert_eq!(stdout(&output), "/tmp\nfrom-image\nkept\n", "{output}");
    let (status, body) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    let (status, body) = edge
        .post(&machine_path(APP, &id, "/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    edge.wait_for_state(APP, &id, "started", BOOT).await;
    let output = exec(&edge, APP, &id, "cat /tmp/note; echo status=$?").await;
    assert!(stdout(&output).contains("status=1"), "{output}");
    edge.shutdown().await;
}

/// A fork bomb is held at the pids limit, and the edge keeps serving another app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_is_held_by_the_pids_limit() {
    let edge = sandbox_edge().await;
    let calm = edge.app_with_machine(IMAGE).started().await.id;
    edge.create_app("bomber").await;
    let bomber = edge.new_machine("bomber", IMAGE).started().await.id;
    let bomb = exec(
        &edge,
        "bomber",
        &bomber,
        "b() { b | b & }; b; sleep 2; echo after",
    );
    let served = async {
        let held = "the fork bomb to reach the pids limit";
        wait::until_true(held, BOOT, async || forks_refused(&bomber) > 0).await;
        let response = edge.request(APP, "/").await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        (status, answer)
    };
    let (output, (status, answer)) = tokio::join!(bomb, served);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["machine_id"], calm.as_str());
    assert!(
        output["stderr"].as_str().unwrap().contains("can't fork"),
        "{output}"
    );
    assert!(forks_refused(&bomber) > 0);
    edge.shutdown().await;
}

/// How many forks the machine's pids limit has refused (its cgroup's `pids.events`, in
/// cgroup v1's or v2's place).
fn forks_refused(id: &str) -> u64 {
    let events = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/edgewake/{id}/pids.events"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/edgewake/{id}/pids.events")))
        .unwrap_or_else(|e| panic!("no pids.events for machine {id}: {e}"));
    let refused = events.trim().strip_prefix("max ");
    refused
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pids.events: {events}"))
}

/// Allocating twice `memory_mb` gets the machine OOM-killed: its state is stopped and
/// its exit event says `oom_killed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed() {
    let edge = sandbox_edge().await;
    // The server listens (so the machine starts), then the shell allocates 128 MB.
    let hog = "edgewake-functions & sleep 1; x=$(head -c 134217728 /dev/zero | tr '\\0' a); echo survived";
    let id = edge
        .app_with_machine(IMAGE)
        .config(|c| {
            c["guest"] = json!({"memory_mb": 64, "cpus": 1});
            c["init"] = json!({"exec": ["sh", "-c", hog]});
        })
        .started()
        .await
        .id;
    let machine = edge.wait_for_state(APP, &id, "stopped", OOM_KILL).await;
    let exit = exit_event(&machine);
    assert_eq!(exit["oom_killed"], true, "{exit}");
    assert_eq!(exit["signal"], 9, "{exit}");
    edge.shutdown().await;
}

/// From inside, a machine reaches neither the API (its 127.0.0.1 is its own), nor a
/// service listening on all the host's addresses (dropped by the firewall, not refused),
/// nor another machine; it cannot read host files, and sees no other machine's processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_are_walled_in() {
    let edge = sandbox_edge().await;
    assert_firewall(&edge);
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let secret = edge.config.data_dir.join("host-secret");
    std::fs::write(&secret, "do not read").unwrap();
    let a = edge.app_with_machine(IMAGE).started().await.id;
    let b = edge.new_machine(APP, IMAGE).started().await.id;
    let (b_ip, gateway) = address_and_gateway(&edge, &b).await;
    let api_port = edge.running.api_addr.port();
    let script = format!(
        "nc -w 2 127.0.0.1 {api_port} </dev/null; echo api=$?; \
         nc -w 2 {gateway} {host_port} </dev/null 2>&1 | grep -q 'timed out'; echo host-dropped=$?; \
         nc -w 2 {b_ip} 8080 </dev/null; echo other=$?; \
         cat {secret} ; echo secret=$?; \
         ls /proc | grep -c '^[0-9]'",
        secret = secret.display()
    );
    let output = exec(&edge, APP, &a, &script).await;
    let text = stdout(&output);
    for expected in ["api=1", "host-dropped=0", "other=1", "secret=1"] {
        assert!(text.contains(expected), "{expected} missing: {output}");
    }
    let processes: u32 = text.lines().last().unwrap().parse().unwrap();
    // Only this machine's own processes: its server, the exec'd shell and its pipeline.
    assert!(processes < 8, "processes visible: {output}");
    let environments = format!("cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c {b}");
    let seen_b = exec(&edge, APP, &a, &environments).await;
    assert_eq!(stdout(&seen_b).trim(), "0", "{seen_b}");
    // The edge still reaches both.
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    drop(host_service);
    edge.shutdown().await;
}

/// The walls as the machine itself meets them: its first process runs under a seccomp
/// filter with no-new-privileges and only the documented capabilities; its root is host
/// id 1000000 (seen from inside and from the host); a new namespace or a mount is
/// refused (EPERM); /proc's leaky files are masked and there is no /sys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walls_seen_from_inside() {
    let edge = sandbox_edge().await;
    let id = edge.app_with_machine(IMAGE).started().await.id;
    let script = "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd|CapInh|CapAmb):' /proc/1/status; \
                  echo uid_map=$(cat /proc/1/uid_map); \
                  busybox unshare -U true 2>&1; echo unshare=$?; \
                  busybox mount -t tmpfs none /tmp 2>&1; echo mount=$?; \
                  echo kcore=$(cat /proc/kcore | wc -c) keys=$(cat /proc/keys | wc -c); \
                  ls /sys >/dev/null 2>&1; echo sys=$?";
    let output = exec(&edge, APP, &id, script).await;
    let text = stdout(&output);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {output}"))
    };
    assert_eq!(field("Seccomp:"), "2", "a seccomp filter: {output}");
    assert_eq!(field("NoNewPrivs:"), "1", "{output}");
    // chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
    // net_bind_service, sys_chroot: bits 0, 1, 3–8, 10, 18.
    const KEPT: &str = "00000000000405fb";
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(field(set), KEPT, "{set} {output}");
    }
    for set in ["CapInh:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000000", "{set} {output}");
    }
    assert_eq!(field("uid_map="), "0 1000000 65536", "{output}");
    assert!(text.contains("Operation not permitted"), "{output}");
    for refused in ["unshare=", "mount="] {
        assert_ne!(field(refused), "0", "{refused} {output}");
    }
    assert_eq!(field("kcore="), "0 keys=0", "masked /proc files: {output}");
    assert_ne!(field("sys="), "0", "no /sys: {output}");
    // From the host, the machine's processes run as the mapped ids.
    let pids = machine_pids(&id);
    assert!(!pids.is_empty());
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace()
                .skip(1)
                .all(|id| id.parse::<u32>().unwrap() >= 1_000_000),
            "{uid}"
        );
    }
    edge.shutdown().await;
}

/// This edgewake's nftables table is installed.
fn assert_firewall(edge: &TestEdge) {
    let table =
        edgewake::drivers::sandbox::network::table_name(&edge.config.sandbox.network.to_string());
    let listed = support::images::run("nft", &["list", "table", "inet", &table]);
    assert!(listed.contains("drop"), "{listed}");
}

/// With egress on, a machine has a default route and the host forwards for it, yet
/// the firewall still drops what it opens to another machine, to the host, or to any
/// private address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_reaches_no_private_address() {
    let edge = TestEdge::start_with(|config| {
        sandboxed(config);
        config.sandbox.egress = true;
        import_test_image(&config.data_dir, IMAGE);
    })
    .await;
    assert_firewall(&edge);
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let a = edge.app_with_machine(IMAGE).started().await.id;
    let b = edge.new_machine(APP, IMAGE).started().await.id;
    let (b_ip, gateway) = address_and_gateway(&edge, &b).await;
    let script = format!(
        "grep -c '^eth0\t00000000' /proc/net/route; \
         for target in {b_ip}:8080 {gateway}:{host_port} 10.1.2.3:80 169.254.169.254:80; do \
           nc -w 2 ${{target%:*}} ${{target#*:}} </dev/null 2>&1 | grep -q 'timed out'; echo $target=$?; \
         done"
    );
    let output = exec(&edge, APP, &a, &script).await;
    let text = stdout(&output);
    assert!(text.starts_with("1\n"), "no default route: {output}");
    for target in [
        format!("{b_ip}:8080"),
        format!("{gateway}:{host_port}"),
        "10.1.2.3:80".into(),
        "169.254.169.254:80".into(),
    ] {
        assert!(
            text.contains(&format!("{target}=0")),
            "{target} not dropped: {output}"
        );
    }
    // The deny-list itself dropped them (not some black hole on the way).
    let table =
        edgewake::drivers::sandbox::network::table_name(&edge.config.sandbox.network.to_string());
    let listed = support::images::run("nft", &["list", "table", "inet", &table]);
    let counted = listed
        .lines()
        .find(|line| line.contains("169.254.0.0/16"))
        .and_then(|line| line.split("counter packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
    assert!(counted.is_some_and(|packets| packets > 0), "{listed}");
    drop(host_service);
    edge.shutdown().await;
}

/// An image that does not exist, or a registry that does not answer, fails the create
/// with a status that says why, and leaves no machine behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_fail_the_create() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), None);
    let edge = TestEdge::start_with(sandboxed).await;
    edge.create_app(APP).await;
    let missing = format!("{}/nothing:v1", registry.host);
    let (status, body) = edge
        .post(
            &machines_path(APP),
            json!({"config": support::seed_config(&missing)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    let unreachable = format!("127.0.0.1:{}/nothing:v1", support::free_port());
    let (status, body) = edge
        .post(
            &machines_path(APP),
            json!({"config": support::seed_config(&unreachable)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let (_, machines) = edge.get(&machines_path(APP)).await;
    assert_eq!(machines, json!([]));
    edge.shutdown().await;
}

/// A start that cannot get its image (removed from the store, registry gone) fails the
/// waiting request with 502 and its request id (why is the log's to say), and leaves
/// the machine stopped with nothing mounted or running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_leaves_nothing_half_started() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), None);
    let image = push_test_image(&registry, "functions", "v1");
    let edge = TestEdge::start_with(sandboxed).await;
    let id = &edge.app_with_machine(&image).created().await.id;
    drop(registry);
    let data_dir = edge.config.data_dir.to_str().unwrap().to_string();
    support::images::run(
        env!("CARGO_BIN_EXE_edgewake"),
        &["images", "rm", &image, "--data-dir", &data_dir],
    );
    let response = edge.request(APP, "/").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let request_id = response.headers()["fly-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    assert!(
        text.contains("failed to start") && text.contains(&request_id),
        "{text}"
    );
    let machine = edge.machine(APP, id).await;
    assert_eq!(machine["state"], "stopped", "{machine}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&data_dir), "{mounts}");
    assert!(support::machine_pids(id).is_empty());
    edge.shutdown().await;
}

/// `images rm` refuses an image a running machine's root is mounted over, and removes
/// it once the machine has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_machines_keep_their_image() {
    let edge = sandbox_edge().await;
    let id = edge.app_with_machine(IMAGE).started().await.id;
    let data_dir = edge.config.data_dir.to_str().unwrap().to_string();
    let rm = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgewake"))
            .args(["images", "rm", IMAGE, "--data-dir", &data_dir])
            .output()
            .unwrap()
    };
    let refused = rm();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("in use by a running machine"), "{said}");
    assert_eq!(edge.request(APP, "/").await.status(), StatusCode::OK);
    let (status, _) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert!(rm().status.success());
    edge.shutdown().await;
}

/// Without its OCI runtime the sandbox driver refuses to start, naming what is missing.
#[tokio::test]
async fn missing_runtime_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::test_config(dir.path());
    sandboxed(&mut config);
    config.sandbox.runtime = "/nonexistent/runc".into();
    let message = refused_start(config).await;
    assert!(
        message.contains("`/nonexistent/runc` is not installed"),
        "{message}"
    );
}

/// With user namespaces, a data dir below a directory that others cannot pass is
/// refused at start, naming that directory (machines could not mount their roots).
#[tokio::test]
async fn closed_data_dir_is_named_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = support::test_config(&closed.join("data"));
    sandboxed(&mut config);
    let message = refused_start(config).await;
    assert!(message.contains(closed.to_str().unwrap()), "{message}");
    assert!(message.contains("o+x"), "{message}");
}

/// Why edgewake refuses to start with `config` (it must refuse).
async fn refused_start(config: edgewake::config::Config) -> String {
    let options = edgewake::server::Options {
        api_token: Some(support::TOKEN.into()),
        bin_dir: Some(support::bin_dir()),
        ..Default::default()
    };
    let error = edgewake::server::start(config, options)
        .await
        .err()
        .expect("refused");
    error.to_string()
}

/// An exec past its timeout answers 408 and leaves nothing running; one of a command
/// that does not exist answers 200 with exit code 127, as a shell; a machine cannot
/// write more than its writable layer holds; on the host, the image trees, the bundle
/// (the machine's environment) and the log are root's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_disk_and_files_are_bounded() {
    let edge = sandbox_edge().await;
    let id = edge.app_with_machine(IMAGE).started().await.id;
    let path = machine_path(APP, &id, "/exec");
    // A child in the background, an orphan (double-forked, reparented to the init) and
    // one waited for: all three go at the timeout.
    let script = "sleep 300 & (sleep 302 &); sleep 301";
    let slow = json!({"command": ["sh", "-c", script], "timeout": 1});
    let (status, body) = edge.post(&path, slow).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    let left = exec(&edge, APP, &id, "ps | grep -c '[s]leep 30'").await;
    assert_eq!(stdout(&left).trim(), "0", "{left}");
    let missing = json!({"command": ["/no/such/command", "x"]});
    let (status, output) = edge.post(&path, missing).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_eq!(output["exit_code"], 127, "as a shell says: {output}");
    let fill = exec(
        &edge,
        APP,
        &id,
        "head -c 200000000 /dev/zero > /tmp/fill; echo $?; wc -c < /tmp/fill",
    )
    .await;
    let lines: Vec<u64> = stdout(&fill)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_ne!(lines[0], 0, "the write succeeded: {fill}");
    let limit = edge.config.sandbox.rootfs_size_mb * 1024 * 1024;
    assert!(lines[1] <= limit, "{fill}");
    let mode = |path: std::path::PathBuf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
    };
    let data = &edge.config.data_dir;
    let machine = data.join("machines").join(&id);
    assert_eq!(mode(data.join("images")), 0o700);
    assert_eq!(mode(machine.join("bundle")), 0o700);
    assert_eq!(mode(machine.join("machine.log")), 0o600);
    assert_eq!(mode(machine.clone()), 0o711);
    edge.shutdown().await;
}

/// The init runs first in every machine: a program that would ignore SIGTERM as PID 1
/// (a shell here) gets it, so a stop ends by that signal at once rather than by SIGKILL
/// after the stop timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signal_reaches_the_program() {
    let edge = sandbox_edge().await;
    let id = edge
        .app_with_machine(IMAGE)
        .config(|c| c["init"] = json!({"exec": ["sh", "-c", "edgewake-functions & wait"]}))
        .started()
        .await
        .id;
    let began = std::time::Instant::now();
    let (status, body) = edge.post(&machine_path(APP, &id, "/stop"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let machine = edge.wait_for_state(APP, &id, "stopped", BOOT).await;
    assert!(
        began.elapsed() < edge.config.machines.stop_timeout,
        "stopped by the timeout"
    );
    let exit = exit_event(&machine);
    assert_eq!(exit["signal"], 15, "{exit}");
    edge.shutdown().await;
}

/// What a machine writes to its writable layer counts as its memory: writing twice its
/// `memory_mb` into /tmp gets it OOM-killed, not the host's memory spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writable_layer_counts_as_memory() {
    let edge = sandbox_edge().await;
    let Machine { id, .. } = edge
        .app_with_machine(IMAGE)
        .config(|c| c["guest"] = json!({"memory_mb": 48, "cpus": 1}))
        .started()
        .await;
    let body =
        json!({"command": ["sh", "-c", "head -c 100000000 /dev/zero > /tmp/fill"], "timeout": 20});
    let _ = edge.post(&machine_path(APP, &id, "/exec"), body).await;
    let machine = edge.wait_for_state(APP, &id, "stopped", OOM_KILL).await;
    let exit = exit_event(&machine);
    assert_eq!(exit["oom_killed"], true, "{exit}");
    edge.shutdown().await;
}
