//! The Machines API's JSON bodies, through the real router (`api::router`: auth, the
//! `ApiJson`/`MaybeJson` extractors, the handlers, `api::error`'s statuses) on machines
//! of the in-memory fake driver.
//!
//! An input is a selector byte (which call) and the body. One edgewake state (its
//! database in a scratch directory of the process) on a paused-clock runtime serves the
//! whole run, so waits cost no time (building the router is what costs: its OpenAPI
//! document). Each input gets app
//! `fuzz` with one started machine `m`, and every app is deleted after it, so one input
//! does not change the next.
//!
//! Checked beyond "does not panic": a body never gets a 5xx (a bad body is the client's
//! fault: a 4xx), and every error answer is Fly's error JSON (`{"error": "..."}`).
#![no_main]

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use edgewake::addresses::AddressRange;
use edgewake::api::{self, ApiState, RegionList};
use edgewake::certificates::Certificates;
use edgewake::certificates::acme::timing::DEFAULT_BACKOFF;
use edgewake::config::operator::DEFAULT_KEEP_AWAKE_MAX;
use edgewake::config::{Config, DEFAULT_STOP_SIGNAL};
use edgewake::drivers::fake::FakeDriver;
use edgewake::hostnames::Hostnames;
use edgewake::lifecycle::{Settings, Supervisor};
use edgewake::machines::Registry;
use edgewake::machines::store::Store;
use edgewake::tls::Tls;
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
const APP: &str = "fuzz";
/// The most of an answer that is read (a machine record is a few kB).
const MAX_ANSWER: usize = 1 << 20;

/// The calls that take a JSON body: method and path (`{id}`: the machine).
const CALLS: [(Method, &str); 11] = [
    (Method::POST, "/v1/apps"),
    (Method::POST, "/v1/apps/fuzz/machines"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}/stop"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}/signal"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}/exec"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}/lease"),
    (Method::POST, "/v1/apps/fuzz/machines/{id}/metadata/key"),
    (Method::PUT, "/v1/apps/fuzz/machines/{id}/metadata"),
    (Method::POST, "/v1/apps/fuzz/certificates/acme"),
    (Method::POST, "/v1/apps/fuzz/certificates/custom"),
];

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    let (method, path) = &CALLS[usize::from(selector) % CALLS.len()];
    let edge = EDGE.get_or_init(Edge::new);
    edge.runtime.block_on(async {
        let id = started_machine(&edge.router).await;
        let path = path.replace("{id}", &id);
        let (status, answer) = call(&edge.router, method.clone(), &path, body.to_vec()).await;
        check_answer(status, &answer, &path);
        delete_apps(edge).await;
    });
});

static EDGE: OnceLock<Edge> = OnceLock::new();

/// The API and the runtime its tasks run on, for the whole run.
struct Edge {
    runtime: Runtime,
    router: Router,
    registry: Arc<Registry>,
}

impl Edge {
    fn new() -> Edge {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let (router, registry) = router();
        Edge {
            runtime,
            router,
            registry,
        }
    }
}

/// Every app (the input's own too), as a client deletes them: force stops machines.
async fn delete_apps(edge: &Edge) {
    for app in edge.registry.apps() {
        let path = format!("/v1/apps/{}?force=true", app.record.name);
        let (status, answer) = call(&edge.router, Method::DELETE, &path, Vec::new()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {answer}");
    }
}

/// This process's own directory for the state database and the certificates (the
/// state database is a file, made private, as the server's).
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgewake-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).expect("a scratch directory");
    dir
}

fn router() -> (Router, Arc<Registry>) {
    let dir = scratch_dir();
    let store = Store::open(&dir.join("state.db")).expect("a state database");
    let range = AddressRange::parse_loopback("127.77.0.0/24").expect("a loopback range");
    let (registry, _) = Registry::load(store, range).expect("an empty registry");
    let settings = Settings {
        idle_timeout: Duration::from_secs(60),
        reap_interval: Duration::from_secs(60),
        wake_timeout: Duration::from_secs(30),
        probe_interval: Duration::from_millis(2),
        stop_signal: DEFAULT_STOP_SIGNAL,
        stop_timeout: Duration::from_secs(5),
        queue_timeout: Duration::from_secs(5),
        max_queued: 8,
    };
    let registry = Arc::new(registry);
    let supervisor = Supervisor::new(registry.clone(), Arc::new(FakeDriver::new()), settings);
    let certificates = certificates(dir, registry.clone());
    let router = api::router(ApiState {
        supervisor: Arc::new(supervisor),
        certificates,
        token: TOKEN.into(),
        regions: Arc::new(ArcSwap::from_pointee(RegionList {
            codes: vec!["ams".to_string(), "ord".to_string()],
            edge: "ams".into(),
        })),
        stopping: CancellationToken::new(),
        keep_awake_max: DEFAULT_KEEP_AWAKE_MAX,
        cluster: None,
        forwarder: api::forward::Forwarder::default(),
    });
    (router, registry)
}

/// The certificates service without ACME (no body here reaches it).
fn certificates(dir: PathBuf, registry: Arc<Registry>) -> Arc<Certificates> {
    let mut config = Config::parse("").expect("the default config");
    config.tls.certs_dir = dir.join("certs");
    let hostnames = Hostnames::open(&dir.join("state.db")).expect("a hostnames store");
    config.data_dir = dir;
    let tls = Arc::new(Tls::new(&config).expect("a fallback certificate"));
    let hostnames = Arc::new(hostnames);
    let cancel = CancellationToken::new();
    Certificates::open(
        &config,
        &tls,
        &hostnames,
        registry,
        DEFAULT_BACKOFF,
        &cancel,
    )
}

/// App `fuzz` with machine `m`, started; its id.
async fn started_machine(router: &Router) -> String {
    let app = json!({"app_name": APP, "org_slug": "personal"});
    let (status, _) = call(router, Method::POST, "/v1/apps", app.to_string().into()).await;
    assert_eq!(status, StatusCode::CREATED);
    let machine = json!({"name": "m", "config": {
        "image": "flyio/fastify-functions",
        "services": [{"internal_port": 8080, "protocol": "tcp",
            "ports": [{"port": 80, "handlers": ["http"]}]}],
        "metadata": {"role": "web"}
    }});
    let create = "/v1/apps/fuzz/machines";
    let (status, answer) = call(router, Method::POST, create, machine.to_string().into()).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let id = answer["id"].as_str().expect("a machine id").to_string();
    let wait = format!("/v1/apps/fuzz/machines/{id}/wait?state=started");
    let (status, _) = call(router, Method::GET, &wait, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "the machine starts");
    id
}

async fn call(router: &Router, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
        .await
        .expect("an answer that fits");
    let answer = match bytes.is_empty() {
        true => Value::Null,
        false => serde_json::from_slice(&bytes).expect("every answer is JSON"),
    };
    (status, answer)
}

fn check_answer(status: StatusCode, answer: &Value, path: &str) {
    assert!(
        !status.is_server_error(),
        "{path} answered {status}: {answer}"
    );
    if !status.is_success() {
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path} answered {status} without Fly's error JSON: {answer}"
        );
    }
}
