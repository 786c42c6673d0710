//! Machines in tests: creating one as a test needs it (in a new app or an existing one,
//! left `created`, launched or started), reading its JSON (paths, events, errors), and
//! finding its processes.

use super::{APP, BOOT, RUNTIME_IMAGE, TestEdge, wait};
use edgewake::drivers::fake::FakeDriver;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// A machine the API created: its id, and its JSON as the API last showed it (the
/// create answer, or the machine once started).
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: String,
    pub json: Value,
}

/// A machine to create, as Fly's create call takes it: the seed's config for an image,
/// and what the test changes. `TestEdge::app_with_machine` or `TestEdge::new_machine`
/// makes one; `created`, `launched` or `started` sends it.
#[must_use = "nothing is created until `.created()`, `.launched()` or `.started()`"]
pub struct NewMachine<'e> {
    edge: &'e TestEdge,
    app: String,
    create_app: bool,
    body: Value,
}

impl<'e> NewMachine<'e> {
    pub(super) fn new(edge: &'e TestEdge, app: &str, image: &str, create_app: bool) -> Self {
        NewMachine {
            edge,
            app: app.to_string(),
            create_app,
            body: json!({"config": seed_config(image)}),
        }
    }

    /// Changes the machine's config (the seed's for the image).
    pub fn config(mut self, change: impl FnOnce(&mut Value)) -> Self {
        change(&mut self.body["config"]);
        self
    }

    /// Sets a field of the create call beside `config`: `region`, `name`, `lease_ttl`…
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.body[field] = value.into();
        self
    }

    /// Creates it with `skip_launch`: it stays `created` until a request or a start wakes
    /// it. Returns the create answer.
    pub async fn created(self) -> Machine {
        self.with("skip_launch", true).send().await
    }

    /// Creates it booting at once, and returns the create answer without waiting for
    /// the boot.
    pub async fn launched(self) -> Machine {
        self.send().await
    }

    /// Creates it booting at once and waits until it has started; returns it as started.
    pub async fn started(self) -> Machine {
        let edge = self.edge;
        let app = self.app.clone();
        let Machine { id, .. } = self.send().await;
        let json = edge.wait_for_state(&app, &id, "started", BOOT).await;
        Machine { id, json }
    }

    async fn send(self) -> Machine {
        if self.create_app {
            self.edge.create_app(&self.app).await;
        }
        let (status, json) = self.edge.post(&machines_path(&self.app), self.body).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        Machine {
            id: id_of(&json),
            json,
        }
    }
}

impl TestEdge {
    /// Creates app `APP` and, in it, a machine of `image`: say how it differs from the
    /// seed's, then `.created()`, `.launched()` or `.started()`.
    pub fn app_with_machine(&self, image: &str) -> NewMachine<'_> {
        NewMachine::new(self, APP, image, true)
    }

    /// A machine of `image` in `app`, which exists already: say how it differs from the
    /// seed's, then `.created()`, `.launched()` or `.started()`.
    pub fn new_machine(&self, app: &str, image: &str) -> NewMachine<'_> {
        NewMachine::new(self, app, image, false)
    }
}

/// An edge on the fake driver (its machines answering HTTP/1.1 with their id) with
/// `tweak`, the app `APP`, and one started machine; gives the machine's id.
pub async fn edge_with_fake_machine(
    tweak: impl FnOnce(&mut edgewake::config::Config),
) -> (TestEdge, Arc<FakeDriver>, String) {
    let fake = Arc::new(FakeDriver::new());
    fake.serve_http();
    let edge = TestEdge::start_with_driver_and(fake.clone(), tweak).await;
    let id = edge.app_with_machine("fake").started().await.id;
    (edge, fake, id)
}

/// A machine with autostop on, in an app of its own (`witness`), that shows when idle
/// stops have had their chance: see [`Witness::idle_stopped_twice`].
pub struct Witness<'e> {
    edge: &'e TestEdge,
    id: String,
}

impl TestEdge {
    /// Creates the `witness` app and its machine (left `created`).
    pub async fn witness(&self) -> Witness<'_> {
        self.create_app(WITNESS).await;
        let id = self.new_machine(WITNESS, RUNTIME_IMAGE).created().await.id;
        Witness { edge: self, id }
    }
}

/// The witness's app.
const WITNESS: &str = "witness";

impl Witness<'_> {
    /// Wakes the witness and waits until it is stopped for idleness, twice. Then the
    /// idle timeout has passed since anything this call began after, and the reaper has
    /// looked at every machine since: one it left running, it left running on purpose.
    pub async fn idle_stopped_twice(&self) {
        for _ in 0..2 {
            let res = self.edge.request(WITNESS, "/").await;
            assert_eq!(res.status(), StatusCode::OK);
            self.edge
                .wait_for_state(WITNESS, &self.id, "stopped", BOOT)
                .await;
        }
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

/// `/v1/apps/{app}/machines`.
pub fn machines_path(app: &str) -> String {
    format!("/v1/apps/{app}/machines")
}

/// `/v1/apps/{app}/machines/{id}{rest}`.
pub fn machine_path(app: &str, id: &str, rest: &str) -> String {
    format!("/v1/apps/{app}/machines/{id}{rest}")
}

/// The id of a machine's JSON, as a String.
pub fn id_of(machine: &Value) -> String {
    machine["id"]
        .as_str()
        .unwrap_or_else(|| panic!("machine without an id: {machine}"))
        .to_string()
}

/// Asserts Fly's error answer: the status, and a JSON body with a non-empty `error`.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {body}"));
    assert!(!message.is_empty(), "{body}");
}

/// The types of the machine's events, newest first.
pub fn event_types(machine: &Value) -> Vec<&str> {
    machine["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {machine}"))
        .iter()
        .map(|e| {
            e["type"]
                .as_str()
                .unwrap_or_else(|| panic!("event without a type: {e}"))
        })
        .collect()
}

/// How many events of `kind` the machine has.
pub fn count_events(machine: &Value, kind: &str) -> usize {
    event_types(machine).iter().filter(|t| **t == kind).count()
}

/// What /proc/PID/stat says about a process that matters here.
struct Stat {
    zombie: bool,
    kernel_thread: bool,
    /// Clock ticks after boot.
    started: u64,
}

/// The process's stat, or None if it has exited; panics if it cannot be read.
fn stat(pid: &str) -> Option<Stat> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let path = format!("/proc/{pid}/stat");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if process_gone(&e) => return None,
        Err(e) => panic!("cannot read {path}: {e}"),
    };
    // After the command name (in parentheses, which it may contain too): field 3 on.
    let fields: Vec<&str> = text[text.rfind(')').expect(&path) + 1..]
        .split_whitespace()
        .collect();
    let number = |field: usize| -> u64 {
        fields[field - 3]
            .parse()
            .unwrap_or_else(|_| panic!("field {field} of {path}: {text}"))
    };
    Some(Stat {
        zombie: fields[0] == "Z",
        kernel_thread: number(9) & PF_KTHREAD != 0,
        started: number(22),
    })
}

/// Whether a process with this pid runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    stat(&pid.to_string()).is_some_and(|s| !s.zombie)
}

/// Pids of live processes that run as machine `id` (their environment says so). Panics
/// when it cannot tell: an empty answer must mean that nothing runs.
pub fn machine_pids(id: &str) -> Vec<u32> {
    let marker = format!("FLY_MACHINE_ID={id}");
    let this_test = stat("self").expect("this process runs").started;
    let entries = std::fs::read_dir("/proc")
        .unwrap_or_else(|e| panic!("cannot list /proc to find machine {id}'s processes: {e}"));
    let mut pids = Vec::new();
    for entry in entries {
        let name = entry
            .unwrap_or_else(|e| panic!("cannot list /proc: {e}"))
            .file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let path = format!("/proc/{pid}/environ");
        let environ = match std::fs::read(&path) {
            Ok(environ) => environ,
            Err(e) if process_gone(&e) => continue,
            // Some environments hide these even from root; none can be this test's.
            Err(_) if stat(&pid.to_string()).is_none_or(|s| older_or_kernel(&s, this_test)) => {
                continue;
            }
            Err(e) => panic!("cannot read {path} to find machine {id}'s processes: {e}"),
        };
        let marked = environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes());
        if marked && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether a process cannot be a machine of this test: a kernel thread, or a process
/// that started before the test did (an init, say).
fn older_or_kernel(process: &Stat, this_test: u64) -> bool {
    process.kernel_thread || process.started < this_test
}

/// Whether reading a process's /proc files failed because it has exited meanwhile.
fn process_gone(error: &std::io::Error) -> bool {
    const ESRCH: i32 = 3;
    error.kind() == std::io::ErrorKind::NotFound || error.raw_os_error() == Some(ESRCH)
}

/// Waits until no process runs as machine `id`, for a stop the test cannot await
/// (a delete's); panics with the pids still running after `BOOT`.
pub async fn wait_until_no_process(id: &str) {
    let what = format!("machine {id}'s processes to end");
    wait::until(&what, BOOT, async || match machine_pids(id).as_slice() {
        [] => Ok(()),
        pids => Err(format!("{pids:?}")),
    })
    .await
}
