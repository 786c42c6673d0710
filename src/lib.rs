//! edgewake: run user code as machines that wake on request, on servers you own.
//!
//! # Layout
//!
//! Bottom to top: a module imports only from modules above it in this list, never the
//! reverse (`tests/layers.rs` fails on an import cycle between top-level modules).
//!
//! - `ids`, `files`, `signals`, `addresses` (the private range machines get addresses
//!   from, handed out round it, and the lock that claims it for one edgewake),
//!   `listening` (which TCP sockets listen where, from `/proc/<pid>/net`), `geo`
//!   (MaxMind-format lookup, great-circle distance), `trusted` and
//!   `proxy_protocol` (who the client is: PROXY headers and X-Forwarded-For from
//!   trusted peers only), `listener` (socket2 listeners, the accept loop and its
//!   connection limit, the open-file limit raised at start and shared out), `metrics`
//!   (the Prometheus series every part counts into, one set per edgewake), `memory`
//!   (free memory handed back to the system after bursts; the one module with
//!   `unsafe`): leaves.
//! - `config`: the operator's TOML file, parsed then validated (every problem at once);
//!   `locate` finds it the same way for every command (`--config`, `EDGEWAKE_CONFIG`,
//!   `./config`, `/etc/edgewake`), relative paths taken from the file's directory;
//!   `operator` holds the `[wake]`, `[no_wake]`, `[replay]` and `[log]` sections.
//! - `images`: the local OCI image store machines run from: `reference` (Docker-style
//!   names), pulls and imports by skopeo into one `layout`, rootfs trees unpacked once by
//!   umoci (`rootfs`, id-mapped for user namespaces), registry credentials (`remote`), the
//!   `lock` shared with the CLI.
//! - `drivers`: the `Driver` trait (`Launch`, `Instance`, `Exit`) and the drivers side
//!   by side: `process` (a catalog command on the machine's own loopback address),
//!   `sandbox` (OCI images under runc: the runtime spec in `bundle` and `seccomp`, the
//!   veth link and firewall in `network`, wired by `edgewake sandbox-hook network`, runc
//!   and the overlay root in `runtime`, host checks in `preflight`), `fake` (in memory,
//!   for lifecycle and race tests); `shared` holds what they all use: `exec` (capped
//!   output, killed at its timeout), `log` (each machine's output in a rotated file),
//!   `procfs` (finding processes), machine directories and the `FLY_*` environment.
//! - `machines`: machines as data — records and states, the typed config (`spec`,
//!   `normalize`, `go_duration`: Fly's canonical answers), the `Registry` of apps and
//!   machines (DashMap + SQLite `store`; destroyed records kept for
//!   `include_deleted`; in a cluster also other `nodes`' machines, and the `changes`
//!   to share), `lease`, `wait` (long poll on a state), the `activity` clock
//!   (with keep-awake), `tunnels` (open WebSockets, closed before a stop), `checks`
//!   (health check configs, results and the health they add up to) and `http_rules`
//!   (an app's wake page, no-wake and wake-early options).
//! - `observe`: what the operator reads in the log: its `format` (text, JSON), the
//!   wake and stop lines (`lifecycle`), the `access` log.
//! - `checks`: running a started machine's health checks; `until_routable` for
//!   requests waiting on a woken machine.
//! - `lifecycle`: a machine's life in one place. The `Supervisor` is its interface:
//!   `ready` for the request path (`acquire`: `pick` a machine along the request's
//!   `Plan`, count it in flight, `wake` it — single-flight, then readiness —, fall back
//!   on failure, queue at the hard limit), and `start`, `stop`, `destroy`,
//!   `operations` (restart, signal, suspend, exec), `update`, `recovery` at boot and the
//!   idle `reaper` (never under `min_machines_running`) for the API and the server,
//!   `awake` (keep-awake). `run` holds what each machine's lifecycle needs: its lock,
//!   its instance, its wake in progress, its back-off after failed starts.
//! - `cluster`: several edges, one cluster (only with `[cluster]`): the shared state on
//!   NATS JetStream KV (`kv`: apps, machines, nodes), the `view` that watches it into
//!   the `Registry` and judges nodes by their heartbeats, the `publish`er of this node's
//!   machines (their one writer) and heartbeat, the `backhaul` credential (HMAC), and
//!   `status` for `edgewake cluster status`.
//! - `tls`: rustls termination; the ClientHello is read first: an ACME validator gets
//!   its TLS-ALPN-01 answer (`challenges`, which also holds the HTTP-01 tokens), a name no
//!   certificate covers may wait for an on-demand order (the `OnDemand` hook); then SNI
//!   picks the certificates installed at run time (`managed`), `certs/` (reloadable),
//!   the development CA and self-signed fallback (`dev_ca`).
//! - `hostnames`: hostnames added to apps (custom domains), one app each, in memory for
//!   routing and in the state database (`store`).
//! - `connection`: the policies every HTTP connection lives under, apart from any one
//!   HTTP implementation: `pace` (how slow a peer may be: per-wait timeouts and a
//!   minimum rate, for bodies; `io` for writes), `serve` (one hyper connection under a
//!   `ClientPolicy`: header and idle timeouts, HTTP/2 keep-alive PINGs, a graceful close
//!   cut after its grace), `stall` (HTTP/2 answers a client does not take, cut on that
//!   connection's tick with what they hold), `deadline` (a connection's timer for each
//!   kind of wait, moved from wait to wait, for the fast path).
//! - `proxy`: the request's path, top to bottom in `proxy/mod.rs` — `challenge` (ACME
//!   HTTP-01 answered before anything else, never waking a machine), `checks` (CONNECT,
//!   transfer codings, a malformed first chunk: refused before any wake), `route` (the
//!   one authority a request names → app: `<app>.<domain>` or an added hostname),
//!   `place` (regions nearest the client, Fly's routing headers), the lifecycle's
//!   `ready`, `forward` (headers, upgrades, the machine's answer; `to_node`: to a
//!   machine on another node over its backhaul), `relay` (the hosting node's side of
//!   the backhaul), `respond` (errors → statuses and short bodies); around them
//!   `no_wake` and `wake_page` (requests the edge answers while an app sleeps),
//!   `keep_awake` and `replay` (what a machine's answer asks of the edge), `report`
//!   (wake headers, metrics, access line), `wake_early` (the ClientHello's server
//!   name); `upstream` is an HTTP/1.1 client connection's own connection to its
//!   machine, the budget of connections to machines, and says whether a failed
//!   request was sent; `pool` the bounded per-machine pool of the other requests (its
//!   slots bound HTTP/2 streams per machine, its connections carry those with a body);
//!   `tunnel` pumps WebSockets and raw TCP after TLS (`raw_tcp`: a `tls`-only port's
//!   stream joined to a woken machine). `h1` is the HTTP/1.1 fast path: a client
//!   connection and its own machine connection in one task, heads parsed with
//!   httparse (`head`, `response`), bodies passed on as framed (`chunked`), the same
//!   phases (`admit`), limits and budget; a client connection that ends leaves its
//!   machine connection for the next (`parked`, a lot per runtime that serves clients);
//!   `lent`: an HTTP/2 stream without a body borrows a parked connection, its answer's
//!   body read off it by the stream (chunked decoded) and the connection parked again.
//! - `edge`: the edge's client connections — TLS first on the HTTPS listener, then the
//!   HTTP/1.1 fast path (`fast`) until a request is not its own, when hyper-util's
//!   HTTP/1.1 + HTTP/2 server takes over with the bytes read so far (`rewind`); both
//!   under the edge's `connection` policy; served on the main runtime or handed by
//!   the accept loops to the `workers` (threads with a current-thread runtime each).
//! - `certificates`: Fly's Certificates resource behind the API: each hostname's custom
//!   and ACME certificates (`pem`), kept in the data dir (`disk`) and served, custom
//!   first (`keeper`); `acme` orders them (instant-acme, ring): the `account` kept 0600,
//!   one `order`, each hostname's `worker` (backoff and renewal `timing`, `status`), and
//!   the guarded `on_demand` hook.
//! - `api`: the Fly-compatible Machines REST API (axum): `apps`, `machines` (create,
//!   get, update, delete), `list` (filters), `lifecycle`, `wait` (+ events),
//!   `metadata`, `lease`, `exec`, `certificates` (Fly's shapes in
//!   `certificate_views`), `keepawake` (with a machine's own token), `observe`
//!   (`/metrics`, `/healthz`, `/readyz`), `forward` (in a cluster, calls for another
//!   node's machines go to it); `auth` (Bearer/FlyV1), `request_id`, `query` (repeated
//!   keys), `error` (Fly's error JSON; the one place where each domain error gets its
//!   status, so handlers just use `?`); `listen` serves it under its own connection
//!   cap and timeouts.
//! - `server`: wiring and ordered shutdown; `membership` joins the cluster and serves
//!   the backhaul listener (with `[cluster]`); `reload` applies a config read again: the
//!   live settings the lifecycle, proxy, edge, API and TLS read per use are swapped
//!   whole (`ArcSwap` snapshots), what was bound at start is kept and named.
//! - `cli`: the command line. `serve` runs the server as a process (config found and
//!   said, logging fit for a terminal or a file, the `pidfile` under flock, SIGHUP
//!   reloads) and `reload` signals it; the client commands with flyctl's habits
//!   (`status`, `apps`, `machine` and its `operations`, `logs -a`, `certs`) talk to the API with
//!   a small hyper-util HTTP `client`; `images` works on the local store; `cluster status`
//!   reads the nodes from the cluster's NATS.
//! - `functions`: the bundled function runtime (`flyio/fastify-functions` in the catalog).
//!
//! # A request's path
//!
//! The listener accepts (a trusted peer's PROXY header names the client); `edge`
//! terminates TLS (HTTPS) and parses HTTP (plain HTTP/1.1 on the fast path, the rest
//! with hyper); the proxy answers an ACME HTTP-01
//! validation itself, else routes `<app>.<domain>` (or a hostname added to an app) to an
//! app, places the client (regions nearest first) and asks the lifecycle for a ready
//! machine: `pick` takes, in the first region that can serve, its started machine with
//! the fewest requests in flight, or one stopped machine; the request counts itself in
//! flight, and if the machine is stopped it joins the machine's single wake (driver
//! start, then probes of `private_ip:internal_port`). Then `forward` streams it to the
//! machine and the answer back; a request the machine never saw (no connection) goes to
//! the next machine. In a cluster the pick runs over every node's machines; one hosted
//! elsewhere is reached through its node's backhaul, where that node wakes it. The reaper stops machines with nothing in flight for the idle
//! timeout.

// Denied, not forbidden, so that `memory` alone may call into the allocator (its doc
// says why); tests/layers.rs fails if any other file allows it.
#![deny(unsafe_code)]

pub mod addresses;
pub mod api;
pub mod certificates;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod drivers;
pub mod edge;
pub mod files;
pub mod functions;
pub mod geo;
pub mod hostnames;
pub mod ids;
pub mod images;
pub mod lifecycle;
pub mod listener;
pub mod listening;
pub mod machines;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod proxy;
pub mod proxy_protocol;
pub mod server;
pub mod signals;
pub mod tls;
pub mod trusted;
