//! A machine's life in one place: start, wake (single-flight, then readiness), stop,
//! idle stop, restart, update, recovery at boot. Each change runs under the machine's
//! lifecycle lock, so none interleaves with another, and in a task of its own, so a
//! caller that goes away (an API client hanging up) cannot cut it short.
//!
//! The `Supervisor` below is the whole interface: the request path asks it for a
//! `ready` machine, the API for lifecycle changes, the server for recovery and
//! shutdown. Each submodule holds the functions behind one group of calls.

mod acquire;
mod awake;
mod error;
mod operations;
pub mod pick;
mod reaper;
mod recovery;
mod run;
mod start;
mod stop;
mod update;
mod wake;

pub use acquire::{Manner, OnSleep, Ready};
pub use error::{AcquireError, OperationError, UpdateError, WakeError};
pub use operations::SUSPEND_NOTE;
pub use pick::{Pinned, Plan};
pub use reaper::autostops;
pub use start::describe_exit;
pub use stop::StopRequest;
pub use update::Update;

use crate::drivers::{Driver, ExecOutput, Launch};
use crate::machines::store::StoredMachine;
use crate::machines::{App, EventSource, Machine, Registry};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use nix::sys::signal::Signal;
use run::Runs;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Marks the exit events of machines that edgewake stopped because it was shutting down.
pub const SHUTDOWN_REASON: &str = "edgewake shutdown";

/// The variable holding a machine's own API token (for `keepawake`).
pub const MACHINE_TOKEN_ENV: &str = "EDGEWAKE_MACHINE_TOKEN";
/// The variable holding the API's URL, as machines reach it.
pub const API_URL_ENV: &str = "EDGEWAKE_API_URL";

/// The port a machine is probed and reached on when its config names no service.
pub const FALLBACK_INTERNAL_PORT: u16 = 8080;

/// Timing and signals for starts and stops, the queue for full machines and the idle
/// reaper. A reload swaps them whole (`set_settings`); each use reads the current ones.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A started machine with nothing in flight for this long is stopped.
    pub idle_timeout: Duration,
    /// How often the reaper looks for idle machines.
    pub reap_interval: Duration,
    pub wake_timeout: Duration,
    pub probe_interval: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    /// How long a request waits when every machine is at its hard limit.
    pub queue_timeout: Duration,
    /// How many requests per app may wait so.
    pub max_queued: usize,
}

pub struct Supervisor {
    pub registry: Arc<Registry>,
    /// What the operator sees at `/metrics`; everyone who counts shares it.
    pub metrics: Arc<Metrics>,
    driver: Arc<dyn Driver>,
    /// Read once per use, so a reload applies to the next start, stop, queue or reaper
    /// round (a load is a few uncontended atomic operations).
    settings: ArcSwap<Settings>,
    runs: Runs,
    /// Requests waiting for room, per app.
    queued: DashMap<String, usize>,
    tasks: TaskTracker,
    /// The runtime lifecycle work runs on: the one the supervisor was made on (the
    /// main one), whichever runtime serves the request that asks for it. None when
    /// made outside any (tests that only pick machines): then the caller's.
    runtime: Option<tokio::runtime::Handle>,
    shutting_down: AtomicBool,
    api_url: std::sync::OnceLock<String>,
}

impl Supervisor {
    /// Made within the runtime its lifecycle work is to run on (the main one): machine
    /// processes, their exit watchers and health checks are bound to it.
    pub fn new(registry: Arc<Registry>, driver: Arc<dyn Driver>, settings: Settings) -> Supervisor {
        Supervisor {
            registry,
            metrics: Arc::new(Metrics::new()),
            driver,
            settings: ArcSwap::from_pointee(settings),
            runs: Runs::default(),
            queued: DashMap::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            shutting_down: AtomicBool::new(false),
            api_url: std::sync::OnceLock::new(),
        }
    }

    /// Runs lifecycle work on the supervisor's runtime, tracked for shutdown: a wake
    /// begun by a request on an edge worker starts, watches and stops its machine on
    /// the main runtime (a process's handle is bound to the runtime that spawned it).
    fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => self.tasks.spawn_on(work, runtime),
            None => self.tasks.spawn(work),
        }
    }

    pub fn driver(&self) -> &dyn Driver {
        &*self.driver
    }

    /// The settings in force now (a guard: read what is needed, do not hold it across
    /// an await).
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// Replaces the settings (a config reload): what is under way keeps the values it
    /// started with, everything after uses the new ones.
    pub fn set_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    // The request path.

    /// A started machine of `app` serving `port`, in the first region of `plan` that can
    /// take the request, woken if it sleeps, and counted in flight.
    pub async fn ready(
        self: &Arc<Self>,
        app: &App,
        port: u16,
        plan: &Plan,
    ) -> Result<Ready, AcquireError> {
        acquire::ready(self, app, port, plan, Manner::default()).await
    }

    /// `ready`, for a request that may not wake a machine, or must not wait for one
    /// (`AcquireError::Asleep` then), or must not keep one awake.
    pub async fn ready_in(
        self: &Arc<Self>,
        app: &App,
        port: u16,
        plan: &Plan,
        manner: Manner,
    ) -> Result<Ready, AcquireError> {
        acquire::ready(self, app, port, plan, manner).await
    }

    // The API.

    /// Begins a wake without waiting for it (the API's start); requests that arrive
    /// meanwhile join it.
    pub fn begin_wake(self: &Arc<Self>, machine: &Arc<Machine>, source: EventSource) {
        wake::begin(self, machine, source, wake::reason_of(source));
    }

    /// Begins waking the machine a request for `app` on `port` would wake, before the
    /// request has come (the TLS ClientHello named the app). Does nothing when a
    /// machine already serves or none may be woken.
    pub fn wake_early(self: &Arc<Self>, app: &App, port: u16, plan: &Plan) {
        acquire::wake_early(self, app, port, plan);
    }

    /// Counts the machine busy for `period` from now (its keep-awake signal, `how`:
    /// `header` or `api`): the reaper leaves it running that long, and idle time counts
    /// from then. The start of a kept-awake period is recorded as an event.
    pub fn keep_awake(&self, machine: &Machine, period: Duration, how: &'static str) {
        awake::keep_awake(self, machine, period, how);
    }

    /// Starts the machine unless it is started, sharing one start among all callers.
    pub async fn wake(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        source: EventSource,
    ) -> Result<(), WakeError> {
        wake::wake(self, machine, source).await
    }

    /// Stops a machine (a no-op when it is not running) and waits until it has exited.
    pub async fn stop(self: &Arc<Self>, machine: &Arc<Machine>, request: StopRequest) {
        stop::stop(self, machine, request).await;
    }

    /// Fly's suspend, done as a stop whose first event is a `suspend` saying so.
    pub async fn suspend(self: &Arc<Self>, machine: &Arc<Machine>, source: EventSource) {
        operations::suspend(self, machine, source).await;
    }

    /// Stops a started machine and starts it again, as one lifecycle change.
    pub async fn restart(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        request: StopRequest,
    ) -> Result<(), OperationError> {
        operations::restart(self, machine, request).await
    }

    /// Sends a signal to a running machine's processes.
    pub async fn signal(&self, machine: &Machine, signal: Signal) -> Result<(), OperationError> {
        operations::signal(self, machine, signal).await
    }

    /// Runs a command inside a running machine (Fly's exec) and returns its output.
    pub async fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, OperationError> {
        operations::exec(self, machine, command, timeout).await
    }

    /// Applies a new config (stopping a running machine first), then starts the machine
    /// in the background unless the update says `skip_launch`.
    pub async fn update(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        update: Update,
    ) -> Result<(), UpdateError> {
        update::update(self, machine, update).await
    }

    /// Stops the machine if it runs, then marks it destroyed and forgets it.
    pub async fn destroy(self: &Arc<Self>, machine: &Arc<Machine>, source: EventSource) {
        stop::destroy(self, machine, source).await;
    }

    /// Destroys every machine of an app that is no longer registered, then its state.
    pub async fn destroy_app(self: &Arc<Self>, app: Arc<App>) {
        stop::destroy_app(self, app).await;
    }

    // Edgewake's own.

    /// Makes every stored machine's state true again after a restart or a crash; returns
    /// once what a crash left running is gone.
    pub async fn recover(self: &Arc<Self>, stored: Vec<StoredMachine>) {
        recovery::recover(self, stored).await;
    }

    /// Stops machines idle for the settings' `idle_timeout`, looking every
    /// `reap_interval` (both read again at every round), until `cancel`.
    pub async fn reap_idle(self: Arc<Self>, cancel: CancellationToken) {
        reaper::run(self, cancel).await;
    }

    /// Stops the machine only if it is still idle once no request can slip in.
    pub async fn stop_if_idle(&self, machine: &Machine, idle_timeout: Duration) -> bool {
        stop::stop_if_idle(self, machine, idle_timeout).await
    }

    /// Asks every open tunnel to close, at the start of a shutdown.
    pub async fn close_all_tunnels(&self) {
        stop::close_all_tunnels(self).await;
    }

    /// Refuses new starts, then stops every running machine and waits for its tasks.
    pub async fn shutdown(self: &Arc<Self>) {
        stop::shutdown(self).await;
    }

    /// Where machines reach the API (`EDGEWAKE_API_URL` in their environment), once
    /// its listener is bound at `api` (an unspecified address is reached on loopback).
    pub fn set_api_url(&self, api: std::net::SocketAddr) {
        let ip = match api.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let url = format!("http://{}", std::net::SocketAddr::new(ip, api.port()));
        let _ = self.api_url.set(url);
    }

    /// What the driver needs to run the machine once, from its record and config, with
    /// the run's own API token in its environment (`EDGEWAKE_MACHINE_TOKEN`).
    fn launch(&self, machine: &Machine) -> Launch {
        let spec = machine.spec();
        let mut env = spec.env.clone();
        env.insert(MACHINE_TOKEN_ENV.into(), machine.issue_token());
        if let Some(url) = self.api_url.get() {
            env.insert(API_URL_ENV.into(), url.clone());
        }
        let record = machine.record();
        Launch {
            machine_id: machine.id.clone(),
            app: machine.app.clone(),
            region: machine.region.clone(),
            instance_id: record.instance_id.clone(),
            private_ip: machine.private_ip,
            image: spec.image.clone(),
            env,
            port: internal_port(machine),
            init: spec.init.clone(),
            guest: spec.guest.resolve(),
        }
    }
}

/// The port the machine's code listens on: its first service's, else the fallback.
fn internal_port(machine: &Machine) -> u16 {
    let spec = machine.spec();
    spec.internal_ports()
        .first()
        .copied()
        .unwrap_or(FALLBACK_INTERNAL_PORT)
}

#[cfg(test)]
mod tests;
