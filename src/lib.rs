//! edgewake: run user code as machines that wake on request, on servers you own.
//!
//! # Layout
//!
//! - `config`: the operator's TOML file: `raw` (the file as written) is read once into
//!   typed values (addresses, durations, ranges, signal, driver), then validated; every
//!   problem is reported at once, named by its key.
//! - `listener`: socket2 listeners and the accept loop with its connection limit.
//! - `tls`: rustls termination, SNI certificates from `certs/` (reloadable), the
//!   development CA and self-signed fallback (`dev_ca`).
//! - `http`: hyper-util's HTTP/1.1 + HTTP/2 server per connection (TLS first on the
//!   HTTPS listener), keep-alive idle timeout, header limits, graceful shutdown.
//! - `proxy_protocol`, `trusted`: who the client is (PROXY headers and X-Forwarded-For
//!   from trusted peers only). `geo`: MaxMind-format lookup and great-circle distance.
//! - `proxy`: the request phases — `route` (Host → app), `place` (regions nearest the
//!   client, routing headers), `pick` (machine in a region, soft/hard limits),
//!   wake (via the supervisor), `forward` (pooled client, headers, upgrades), `respond`
//!   (errors, redirects); `upstream` is an HTTP/1.1 client connection's own connection
//!   to its machine; `tunnel` pumps WebSockets and raw TCP after TLS.
//! - `wake`: single-flight wake of a machine and its readiness probe.
//! - `machines`: records and states, the `Registry` (DashMap + SQLite `store`; destroyed
//!   records kept for `include_deleted`), the `Driver` trait and the `process` driver,
//!   the `Supervisor` (start, `stopping`, `operations` — restart/signal/suspend —,
//!   `update`, recovery at boot), `wait` (long poll on a machine's state channel),
//!   `lease`, config `normalize`/`go_duration` (Fly's canonical answers), the `reaper`
//!   (idle stop), the `activity` clock and `tunnels` (open WebSockets, closed before a
//!   stop); `exec` (Fly's exec: capped output, killed at its timeout), `log` (each
//!   machine's output, pumped into a rotated file) and `procfs` (finding processes).
//! - `api`: the Fly-compatible Machines REST API (axum): `apps`, `machines` (create,
//!   get, update, delete), `list` (filters), `lifecycle`, `wait` (+ events),
//!   `metadata`, `lease`, `exec`; `auth` (Bearer/FlyV1), `request_id`, `query` (repeated
//!   keys), `error` (Fly's error JSON, and the status each driver error means).
//! - `sandbox`: the `sandbox` driver — OCI images under runc in their own namespaces:
//!   the runtime spec (`bundle`, `seccomp`), the machine's veth link and firewall
//!   (`network`, wired by the runtime's hook `edgewake sandbox-hook network`), runc and
//!   the overlay root on its tmpfs layer (`runtime`), host checks (`preflight`).
//! - `cli`: the operator's client commands (`status`, `apps`, `machine`) over the API,
//!   with a small hyper-util HTTP `client`; `images` works on the local store.
//! - `images`: the local OCI image store machines run from: `reference` (Docker-style
//!   names), pulls and imports by skopeo into one `layout`, rootfs trees unpacked once by
//!   umoci (`rootfs`, id-mapped for user namespaces), the `lock` shared with the CLI.
//! - `server`: wiring and ordered shutdown. `ids`: machine ids, names, tokens. `files`:
//!   directories with an exact mode.
//! - `functions`: the bundled function runtime (`flyio/fastify-functions` in the catalog).
//!
//! # A request's path
//!
//! The listener accepts (a trusted peer's PROXY header names the client); `tls`
//! terminates (HTTPS); `http` parses; `proxy::route` maps `<app>.<domain>` to an app;
//! `proxy::place` orders regions nearest the client; `proxy::pick` takes, in the first
//! region that can serve, its started machine with the fewest requests in flight, or one
//! stopped machine; the request counts itself in flight, and if the machine is stopped
//! it joins the machine's single wake (driver start, then TCP probes of
//! `private_ip:internal_port`); then `forward` streams it to the machine and the answer
//! back. The reaper stops machines with nothing in flight for the idle timeout.

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod files;
pub mod functions;
pub mod geo;
pub mod http;
pub mod ids;
pub mod images;
pub mod listener;
pub mod machines;
pub mod proxy;
pub mod proxy_protocol;
pub mod sandbox;
pub mod server;
pub mod tls;
pub mod trusted;
pub mod wake;
