//! The bundled function runtime, listed in the default image catalog as
//! `flyio/fastify-functions`: run as `edgewake functions` (what the catalog names, since
//! `cargo run` builds only the binary it runs) or as the `edgewake-functions` binary. It answers every request with JSON naming its machine,
//! region, the method, path and headers it received.
//!
//! Knobs (for the seed walk-through and for tests):
//! - `?sleep=MS` waits before answering; `?stream=N&interval=MS` sends N server-sent
//!   events, one per interval; `?bytes=N` answers N bytes (a large download);
//!   `GET /exit` answers, then the process exits 0.
//! - `?header=NAME:VALUE` (repeatable) adds a header to the answer (a keep-awake, say);
//!   `?replay=VALUE` answers with `fly-replay: VALUE` unless the request was replayed
//!   already (as a router app does).
//! - `/health` answers 200 while healthy, else 503; `/health/fail` and `/health/pass`
//!   switch it; env `HEALTHY_AFTER_MS` makes it healthy only that long after start.
//! - `/keepawake?for=2s` asks the edge to keep this machine up, calling the API with
//!   the machine's own token (`EDGEWAKE_API_URL`, `EDGEWAKE_MACHINE_TOKEN`).
//! - env `STARTUP_DELAY_MS` waits before listening (a slow boot); `EXIT_AFTER_IDLE`
//!   (e.g. `60s`) exits by itself after that long without a request, as the seed's
//!   runtime does. `SHUTDOWN_DELAY_MS` keeps serving that long after SIGTERM (an app
//!   that drains slowly). `EXIT_WHEN_ORPHANED=1` exits within a second of the process
//!   that started it ending (the tests set it: a test that fails before it stops its
//!   edgewake leaves no machine running; edgewake itself does not, as its machines
//!   outlive a restart of it).
//!
//! The answer's `env` lists the variables whose names start with `APP_` (so a test can
//! see which config a machine runs).
//!
//! It listens on `$FLY_PRIVATE_IP` (else `$HOST`, else 0.0.0.0) at `$PORT` (else 8080).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

mod signals;

use signals::{health, keep_awake};

type Body = BoxBody<Bytes, Infallible>;

/// Facts about this machine, from the environment the driver set.
struct Machine {
    id: String,
    app: String,
    region: String,
    /// The `APP_*` variables this run was started with.
    app_env: Map<String, Value>,
    started: Instant,
    /// Milliseconds after `started` of the last request.
    last_request_ms: AtomicU64,
    exit: Notify,
    /// `/health` fails while set.
    unhealthy: std::sync::atomic::AtomicBool,
    /// `/health` fails until this long after start.
    healthy_after: Duration,
}

/// Runs the function runtime until it is told to exit, goes idle, or is terminated.
pub fn run() -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    // Before anything can take time: the process that started this one.
    let parent = std::os::unix::process::parent_id();
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if let Some(ms) = env("STARTUP_DELAY_MS").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let ip: IpAddr = env("FLY_PRIVATE_IP")
        .or_else(|| env("HOST"))
        .and_then(|v| v.parse().ok())
        .unwrap_or([0, 0, 0, 0].into());
    let port: u16 = env("PORT").and_then(|v| v.parse().ok()).unwrap_or(8080);
    // Before listening: a stop can come the moment the port is open.
    let terminated = terminated();
    // The edge's own listener settings: a backlog deep enough for a herd of first requests.
    let listener = crate::listener::bind(SocketAddr::new(ip, port))?;
    println!("edgewake-functions listening on {}", listener.local_addr()?);
    let machine = Arc::new(Machine {
        id: env("FLY_MACHINE_ID").unwrap_or_default(),
        app: env("FLY_APP_NAME").unwrap_or_default(),
        region: env("FLY_REGION").unwrap_or_default(),
        app_env: std::env::vars()
            .filter(|(k, _)| k.starts_with("APP_"))
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        started: Instant::now(),
        last_request_ms: AtomicU64::new(0),
        exit: Notify::new(),
        unhealthy: std::sync::atomic::AtomicBool::new(false),
        healthy_after: Duration::from_millis(
            env("HEALTHY_AFTER_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
    });
    let idle_exit = env("EXIT_AFTER_IDLE").and_then(|v| humantime::parse_duration(&v).ok());
    let drain = Duration::from_millis(
        env("SHUTDOWN_DELAY_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    tokio::select! {
        () = accept(listener, machine.clone()) => {}
        () = machine.exit.notified() => println!("exiting on request"),
        () = exit_when_idle(&machine, idle_exit) => println!("idle: exiting"),
        () = exit_when_orphaned(parent, env("EXIT_WHEN_ORPHANED").is_some()) => println!("orphaned: exiting"),
        () = async { terminated.await; tokio::time::sleep(drain).await } => println!("terminated"),
    }
    Ok(())
}

async fn accept(listener: TcpListener, machine: Arc<Machine>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let machine = machine.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, machine.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    machine: Arc<Machine>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(req));
    }
    if let Some(answer) = health(&machine, req.uri().path()) {
        return Ok(answer);
    }
    if req.uri().path() == "/keepawake" {
        return Ok(keep_awake(&machine, req.uri().query().unwrap_or("")).await);
    }
    let replayed = req.headers().contains_key("fly-replay-src");
    machine.touch();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    if let Some(ms) = query.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(size) = query.bytes {
        return Ok(download(size));
    }
    if let Some(events) = query.stream {
        return Ok(stream_events(
            events,
            Duration::from_millis(query.interval_ms),
        ));
    }
    let exit = req.uri().path() == "/exit";
    let described = describe(&machine, req).await;
    if exit {
        let machine = machine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await; // let the answer leave first
            machine.exit.notify_one();
        });
    }
    machine.touch();
    let mut response = json_response(StatusCode::OK, &described);
    add_headers(&mut response, &query, replayed);
    Ok(response)
}

/// The headers `?header=` and `?replay=` ask for.
fn add_headers(response: &mut Response<Body>, query: &Query, replayed: bool) {
    let replay = query.replay.as_ref().filter(|_| !replayed);
    let pairs = query
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .chain(replay.map(|r| ("fly-replay", r.as_str())));
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
}

/// `/ws`: accepts a WebSocket upgrade and echoes every text and binary message.
fn websocket_echo(mut req: Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "not a WebSocket upgrade"}),
        );
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let mut socket =
            tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), role, None)
                .await;
        while let Some(Ok(message)) = socket.next().await {
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .body(Full::new(Bytes::new()).boxed())
        .expect("valid response")
}

/// The request as the machine saw it.
async fn describe(machine: &Machine, req: Request<Incoming>) -> Value {
    let (parts, body) = req.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => *existing = format!("{existing}, {value}"),
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    json!({
        "machine_id": machine.id,
        "app": machine.app,
        "region": machine.region,
        "method": parts.method.as_str(),
        "version": format!("{:?}", parts.version),
        "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "body_bytes": body_bytes,
        "env": machine.app_env,
        "uptime_ms": machine.started.elapsed().as_millis() as u64,
    })
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("valid response")
}

/// `size` bytes of `x`, streamed in pieces of at most 64 KiB.
fn download(size: u64) -> Response<Body> {
    const PIECE: u64 = 64 * 1024;
    let piece = Bytes::from(vec![b'x'; PIECE as usize]);
    let pieces = (0..size.div_ceil(PIECE)).map(move |i| {
        let len = (size - i * PIECE).min(PIECE) as usize;
        Ok::<_, Infallible>(Frame::data(piece.slice(..len)))
    });
    Response::builder()
        .header("content-length", size)
        .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
            pieces,
        ))))
        .expect("valid response")
}

/// `count` server-sent events, `interval` apart, written as they happen.
fn stream_events(count: u64, interval: Duration) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            let event = Frame::data(Bytes::from(format!("data: {i}\n\n")));
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The query knobs this runtime understands.
struct Query {
    sleep_ms: Option<u64>,
    stream: Option<u64>,
    interval_ms: u64,
    bytes: Option<u64>,
    headers: Vec<String>,
    replay: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut parsed = Query {
            sleep_ms: None,
            stream: None,
            interval_ms: 100,
            bytes: None,
            headers: Vec::new(),
            replay: None,
        };
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = value.parse().ok();
            match key {
                "sleep" => parsed.sleep_ms = number,
                "stream" => parsed.stream = number,
                "interval" => parsed.interval_ms = number.unwrap_or(100),
                "bytes" => parsed.bytes = number,
                "header" => parsed.headers.push(decode(value)),
                "replay" => parsed.replay = Some(decode(value)),
                _ => {}
            }
        }
        parsed
    }
}

/// A query value with `%XX` and `+` decoded.
fn decode(value: &str) -> String {
    form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Machine {
    fn touch(&self) {
        self.last_request_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_request_ms.load(Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

async fn exit_when_idle(machine: &Machine, after: Option<Duration>) {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    loop {
        let idle = machine.idle_for();
        if idle >= after {
            return;
        }
        tokio::time::sleep(after - idle).await;
    }
}

/// How often an orphan watch looks at its parent.
const ORPHAN_CHECK: Duration = Duration::from_secs(1);

/// Resolves once `parent`, the process that started this one, has ended (this one is
/// then adopted by another), when `watch` is on; never otherwise.
async fn exit_when_orphaned(parent: u32, watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    while std::os::unix::process::parent_id() == parent {
        tokio::time::sleep(ORPHAN_CHECK).await;
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed at the call, not when the
/// future is first polled: until then either signal would kill at once, skipping the
/// drain (`SHUTDOWN_DELAY_MS`).
fn terminated() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
