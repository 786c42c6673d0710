//! The fake driver: machines that run nowhere. A start goes as the test scripts it —
//! at once or slowly, failing, never listening, exiting while it boots — so lifecycle
//! and race tests run on paused time without real processes. Starts can be held until
//! the test lets them go, and a started machine can answer HTTP on its own address, for
//! tests through the proxy (answers, too, can be held; the connections it was sent are
//! counted).

mod server;

use super::{Driver, DriverError, ExecOutput, Exit, Instance, Launch};
use async_trait::async_trait;
use nix::sys::signal::Signal;
use server::{Answers, answer_http};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Fake pids start here, far above any real one (Linux's pid_max is at most 2^22).
const FIRST_PID: u32 = 10_000_000;

/// How a started machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// It listens `after` the start returned (zero: at once).
    Ready { after: Duration },
    /// It starts but never listens (a wake times out).
    Hang,
    /// It exits with `code`, `after` the start returned, before listening.
    Exit { after: Duration, code: i32 },
}

/// What a start does, and how long a stop takes.
#[derive(Debug, Clone)]
pub struct Script {
    /// How long the driver's start itself takes (an image pull, a slow runtime).
    pub start_takes: Duration,
    /// The driver refuses to start the machine with the error this makes (made anew
    /// each time: a `DriverError` may hold an `io::Error`, which cannot be cloned).
    pub fail: Option<fn() -> DriverError>,
    pub boot: Boot,
    /// How long the machine takes to exit after its stop signal.
    pub stop_takes: Duration,
    /// Not even SIGKILL ends it (a process stuck in the kernel): a stop never returns.
    pub unkillable: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            start_takes: Duration::ZERO,
            fail: None,
            boot: Boot::Ready {
                after: Duration::ZERO,
            },
            stop_takes: Duration::ZERO,
            unkillable: false,
        }
    }
}

/// One running fake machine.
struct Run {
    machine_id: String,
    listens_at: Option<Instant>,
    /// Its address and port: a probe anywhere else never succeeds, as with a real
    /// machine.
    listens_on: SocketAddr,
    exit: watch::Sender<Option<Exit>>,
    /// The HTTP server, when the driver serves HTTP.
    server: Option<AbortHandle>,
    tasks: Vec<AbortHandle>,
}

#[derive(Default)]
struct State {
    default: Script,
    scripts: HashMap<String, Script>,
    runs: HashMap<u32, Run>,
    starts: HashMap<String, usize>,
    stops: HashMap<String, usize>,
    serve_http: bool,
    /// Runs a crashed edgewake left behind, by machine: how long each takes to die once
    /// it is killed. While one is there, its machine's address is taken.
    orphans: HashMap<String, Duration>,
}

pub struct FakeDriver {
    state: Mutex<State>,
    next_pid: AtomicU32,
    /// While `true`, starts wait (see `hold_starts`).
    held: watch::Sender<bool>,
    answers: Arc<Answers>,
}

impl Default for FakeDriver {
    fn default() -> FakeDriver {
        FakeDriver {
            state: Mutex::default(),
            next_pid: AtomicU32::new(FIRST_PID),
            held: watch::channel(false).0,
            answers: Arc::new(Answers {
                held: watch::channel(false).0,
                open: Mutex::default(),
            }),
        }
    }
}

impl FakeDriver {
    pub fn new() -> FakeDriver {
        FakeDriver::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every machine without a script of its own starts so.
    pub fn script_all(&self, script: Script) {
        self.state().default = script;
    }

    /// This machine starts so.
    pub fn script(&self, machine_id: &str, script: Script) {
        self.state().scripts.insert(machine_id.into(), script);
    }

    /// Started machines answer every HTTP/1.1 request on their address and port with
    /// 200 and their machine id as the body.
    pub fn serve_http(&self) {
        self.state().serve_http = true;
    }

    /// From now until `release_answers`, machines read a request's head and then wait:
    /// they neither answer nor read anything more.
    pub fn hold_answers(&self) {
        self.answers.held.send_replace(true);
    }

    pub fn release_answers(&self) {
        self.answers.held.send_replace(false);
    }

    /// How many connections to the machine are open now.
    pub fn open_connections(&self, machine_id: &str) -> usize {
        self.answers.counts(machine_id).0
    }

    /// The most connections to the machine that were ever open at once.
    pub fn most_connections(&self, machine_id: &str) -> usize {
        self.answers.counts(machine_id).1
    }

    /// How many connections the machine has accepted in all.
    pub fn accepted_connections(&self, machine_id: &str) -> usize {
        self.answers.counts(machine_id).2
    }

    /// Starts wait from now until `release_starts`.
    pub fn hold_starts(&self) {
        self.held.send_replace(true);
    }

    pub fn release_starts(&self) {
        self.held.send_replace(false);
    }

    /// How many times the machine was started (whether or not it came up).
    pub fn starts(&self, machine_id: &str) -> usize {
        self.state().starts.get(machine_id).copied().unwrap_or(0)
    }

    /// How many starts have begun and are waiting at a hold or still running.
    pub fn total_starts(&self) -> usize {
        self.state().starts.values().sum()
    }

    /// How many times the machine was stopped by the driver.
    pub fn stops(&self, machine_id: &str) -> usize {
        self.state().stops.get(machine_id).copied().unwrap_or(0)
    }

    /// Whether the machine has a run that has not exited.
    pub fn is_running(&self, machine_id: &str) -> bool {
        self.state()
            .runs
            .values()
            .any(|run| run.machine_id == machine_id)
    }

    /// The machine's run exits now with `code`, as a crash would.
    pub fn crash(&self, machine_id: &str, code: i32) {
        let mut state = self.state();
        let pids: Vec<u32> = state
            .runs
            .iter()
            .filter(|(_, run)| run.machine_id == machine_id)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in pids {
            end_run(&mut state, pid, exited_with(code));
        }
    }

    /// The machine has a run left by a crashed edgewake, which takes `dies_after` to
    /// be gone once killed; until then a start fails, its address in use.
    pub fn leave_orphan(&self, machine_id: &str, dies_after: Duration) {
        self.state().orphans.insert(machine_id.into(), dies_after);
    }

    /// The machine stops answering on its port but keeps running, as a machine whose
    /// server died under a live supervisor would: connections to it are refused.
    pub fn stop_listening(&self, machine_id: &str) {
        let mut state = self.state();
        let runs = state.runs.values_mut();
        for run in runs.filter(|run| run.machine_id == machine_id) {
            run.server.take().as_ref().map(AbortHandle::abort);
        }
    }

    fn script_for(&self, machine_id: &str) -> Script {
        let state = self.state();
        state
            .scripts
            .get(machine_id)
            .unwrap_or(&state.default)
            .clone()
    }

    async fn wait_while_held(&self) {
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
    }
}

fn exited_with(code: i32) -> Exit {
    Exit {
        code: Some(code),
        signal: None,
        oom_killed: false,
    }
}

fn killed_by(signal: Signal) -> Exit {
    Exit {
        code: None,
        signal: Some(signal as i32),
        oom_killed: false,
    }
}

/// Ends a run: its exit is published and its tasks (HTTP server, scheduled exit) stop.
fn end_run(state: &mut State, pid: u32, exit: Exit) {
    if let Some(run) = state.runs.remove(&pid) {
        run.tasks
            .iter()
            .chain(&run.server)
            .for_each(AbortHandle::abort);
        run.exit.send_replace(Some(exit));
        *state.stops.entry(run.machine_id).or_default() += 1;
    }
}

#[async_trait]
impl Driver for FakeDriver {
    async fn check_image(&self, _image: &str) -> Result<(), DriverError> {
        Ok(())
    }

    async fn start(&self, launch: Launch) -> Result<Instance, DriverError> {
        *self
            .state()
            .starts
            .entry(launch.machine_id.clone())
            .or_default() += 1;
        self.wait_while_held().await;
        let script = self.script_for(&launch.machine_id);
        tokio::time::sleep(script.start_takes).await;
        if let Some(error) = script.fail {
            return Err(error());
        }
        if self.state().orphans.contains_key(&launch.machine_id) {
            return Err(DriverError::Spawn {
                command: "fake".into(),
                source: std::io::ErrorKind::AddrInUse.into(),
            });
        }
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let (exit, exit_rx) = watch::channel(None);
        let now = Instant::now();
        let mut run = Run {
            machine_id: launch.machine_id.clone(),
            listens_at: None,
            listens_on: SocketAddr::from((launch.private_ip, launch.port)),
            exit,
            server: None,
            tasks: Vec::new(),
        };
        match script.boot {
            Boot::Ready { after } => run.listens_at = Some(now + after),
            Boot::Hang => {}
            Boot::Exit { after, code } => {
                let exit = run.exit.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    exit.send_replace(Some(exited_with(code)));
                });
                run.tasks.push(task.abort_handle());
            }
        }
        let mut state = self.state();
        if state.serve_http && run.listens_at.is_some() {
            let listener = std::net::TcpListener::bind(run.listens_on)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(DriverError::Files)?;
            let answers = self.answers.clone();
            let server = tokio::spawn(answer_http(listener, launch.machine_id.clone(), answers));
            run.server = Some(server.abort_handle());
        }
        state.runs.insert(pid, run);
        Ok(Instance::new(pid, exit_rx))
    }

    async fn accepts(&self, instance: &Instance, addr: SocketAddr) -> bool {
        let state = self.state();
        let run = state
            .runs
            .get(&instance.pid)
            .filter(|run| run.listens_on == addr);
        let listens_at = run.and_then(|run| run.listens_at);
        listens_at.is_some_and(|at| Instant::now() >= at)
    }

    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit {
        if let Some(exit) = instance.exit_status() {
            self.state().runs.remove(&instance.pid);
            return exit;
        }
        let machine_id = match self.state().runs.get(&instance.pid) {
            Some(run) => run.machine_id.clone(),
            None => return Exit::UNKNOWN,
        };
        let script = self.script_for(&machine_id);
        if script.unkillable {
            return std::future::pending().await;
        }
        let stop_takes = script.stop_takes;
        let exit = if stop_takes > timeout {
            tokio::time::sleep(timeout).await;
            killed_by(Signal::SIGKILL)
        } else {
            tokio::time::sleep(stop_takes).await;
            killed_by(signal)
        };
        end_run(&mut self.state(), instance.pid, exit);
        instance.exited().await
    }

    fn signal(&self, instance: &Instance, signal: Signal) {
        if signal == Signal::SIGKILL {
            end_run(&mut self.state(), instance.pid, killed_by(signal));
        }
    }

    async fn reap_orphan(&self, machine_id: &str, _pid: u32) {
        let dies_after = self.state().orphans.get(machine_id).copied();
        if let Some(dies_after) = dies_after {
            tokio::time::sleep(dies_after).await;
            self.state().orphans.remove(machine_id);
        }
    }

    async fn forget(&self, _machine_id: &str) {}

    fn log_path(&self, _machine_id: &str) -> Option<std::path::PathBuf> {
        None
    }

    async fn exec(
        &self,
        _launch: &Launch,
        _instance: &Instance,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        Ok(ExecOutput {
            exit_code: 0,
            exit_signal: None,
            stdout: command.join(" "),
            stderr: String::new(),
        })
    }
}
