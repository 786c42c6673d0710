//! Waking a machine: every request that finds it stopped joins one shared start
//! (single-flight), which runs the driver and then probes the machine's port until it
//! accepts, its process exits, or the wake timeout passes.

use crate::machines::driver::{Exit, Instance};
use crate::machines::{EventSource, Machine, Supervisor};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Why a wake failed. Cloned to every request that waited on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    #[error("the machine exited while starting ({0})")]
    Exited(String),
    #[error("the machine could not start: {0}")]
    StartFailed(String),
    #[error("the machine did not listen within {0:?}")]
    Timeout(Duration),
    #[error("the machine is being destroyed")]
    Gone,
    #[error("edgewake is shutting down")]
    ShuttingDown,
}

/// The outcome of the wake in progress, shared by everyone waiting on it.
pub type WakeAttempt = watch::Receiver<Option<Result<(), WakeError>>>;

impl Supervisor {
    /// Starts the machine unless it is started, sharing one start among all callers.
    pub async fn wake(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        source: EventSource,
    ) -> Result<(), WakeError> {
        let mut attempt = self.join_or_begin_wake(machine, source);
        let outcome = attempt.wait_for(Option::is_some).await;
        match outcome {
            Ok(result) => result.clone().expect("waited for Some"),
            Err(_) => Err(WakeError::ShuttingDown),
        }
    }

    /// Whether a start is under way (requests should join it rather than wake another).
    pub fn is_waking(&self, machine: &Machine) -> bool {
        machine
            .wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Begins a wake without waiting for it (the API's start); requests that arrive
    /// meanwhile join it. Registered before returning, so a later stop waits for it.
    pub fn begin_wake(self: &Arc<Self>, machine: &Arc<Machine>, source: EventSource) {
        let _ = self.join_or_begin_wake(machine, source);
    }

    fn join_or_begin_wake(
        self: &Arc<Self>,
        machine: &Arc<Machine>,
        source: EventSource,
    ) -> WakeAttempt {
        let mut slot = machine.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(attempt) = slot.as_ref() {
            return attempt.clone();
        }
        let (tx, rx) = watch::channel(None);
        *slot = Some(rx.clone());
        let (this, machine) = (self.clone(), machine.clone());
        // Spawned, so the start goes on even if the request that began it goes away.
        self.tasks().spawn(async move {
            let result = this.start(&machine, source).await;
            if let Err(e) = &result {
                tracing::warn!(machine = %machine.id, "wake failed: {e}");
            }
            *machine.wake.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tx.send_replace(Some(result));
        });
        rx
    }
}

/// Waits until `addr` accepts a TCP connection, failing at once if the process exits
/// and after `timeout` if it never listens.
pub async fn until_ready(
    addr: Option<SocketAddr>,
    instance: &Instance,
    interval: Duration,
    timeout: Duration,
) -> Result<(), WakeError> {
    let Some(addr) = addr else { return Ok(()) };
    tokio::select! {
        biased;
        exit = instance.exited() => Err(WakeError::Exited(describe_exit(exit))),
        () = probe(addr, interval) => Ok(()),
        () = tokio::time::sleep(timeout) => Err(WakeError::Timeout(timeout)),
    }
}

async fn probe(addr: SocketAddr, interval: Duration) {
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

pub fn describe_exit(exit: Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exit status unknown".into(),
    }
}
