//! Running a machine's health checks while it is started. Each start begins a run (one
//! task per check), each stop ends it (`Registry::transition` does, whatever stopped
//! the machine). Until a check has passed once it runs every `SETTLING_INTERVAL`, as
//! Fly's flyd runs checks at a shortened interval right after a start, so a woken
//! machine is routable the moment it is healthy; then at its own interval.
//!
//! What the runs find adds up to the machine's `Health`, which the lifecycle's pick
//! reads (only a healthy machine gets new requests) and requests waiting for a woken
//! machine watch (`until_routable`).

mod probe;

use crate::machines::Machine;
use crate::machines::checks::{CheckResult, CheckStatus, Health, MachineChecks, NamedCheck};
use crate::machines::record::now_rfc3339;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Gap between runs of a check that has not passed yet since the start.
pub const SETTLING_INTERVAL: Duration = Duration::from_millis(20);

/// Why a machine could not be used after its wake.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HealthError {
    #[error("its checks did not pass within {0:?}")]
    NotHealthy(Duration),
    #[error("its checks are failing")]
    Failing,
}

/// What a run shares among its checks.
struct Run {
    machine: Arc<Machine>,
    began: Instant,
    /// How long after the start the machine may take to pass; then it is failing.
    settle_within: Duration,
    /// Whether every gating check has passed at once since the start.
    passed_once: AtomicBool,
    /// Each gating check's last status, for adding them up.
    gating: Mutex<BTreeMap<String, CheckStatus>>,
}

/// Begins the checks of a machine that has just started (ending any earlier run).
/// A machine that fails to pass within `settle_within` of now counts as failing.
pub fn begin(machine: &Arc<Machine>, settle_within: Duration) {
    let checks = machine.spec().named_checks();
    if checks.is_empty() {
        machine.checks.end();
        return;
    }
    let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
    let gated = checks.iter().any(|c| c.gates);
    let token = machine.checks.begin(&names, gated);
    let gating = checks
        .iter()
        .filter(|c| c.gates)
        .map(|c| (c.name.clone(), CheckStatus::Warning))
        .collect();
    let run = Arc::new(Run {
        machine: machine.clone(),
        began: Instant::now(),
        settle_within,
        passed_once: AtomicBool::new(false),
        gating: Mutex::new(gating),
    });
    for check in checks {
        tokio::spawn(run_check(run.clone(), check, token.clone()));
    }
}

/// Runs one check until the run ends.
async fn run_check(run: Arc<Run>, check: NamedCheck, token: CancellationToken) {
    let addr = SocketAddr::from((run.machine.private_ip, check.port));
    let mut passed = false;
    let mut last = None;
    loop {
        let outcome = tokio::select! {
            () = token.cancelled() => return,
            outcome = probe::run(&check.spec, addr) => outcome,
        };
        if token.is_cancelled() {
            return; // stopped meanwhile: its result means nothing now
        }
        passed |= outcome.passed;
        let status = match outcome.passed {
            true => CheckStatus::Passing,
            false if run.began.elapsed() < check.spec.grace_period() => CheckStatus::Warning,
            false => CheckStatus::Critical,
        };
        if last != Some(status) {
            tracing::info!(machine = %run.machine.id, app = %run.machine.app, check = %check.name,
                "check {}: {}", status_word(status), outcome.output);
            last = Some(status);
        }
        run.machine.checks.record(CheckResult {
            name: check.name.clone(),
            status,
            output: outcome.output,
            updated_at: now_rfc3339(),
        });
        if check.gates {
            run.update(&check.name, status);
        }
        let pause = if passed {
            check.spec.interval()
        } else {
            SETTLING_INTERVAL
        };
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

impl Run {
    /// Adds up the gating checks after one of them changed.
    fn update(&self, name: &str, status: CheckStatus) {
        let mut gating = self.gating.lock().unwrap_or_else(|p| p.into_inner());
        gating.insert(name.to_string(), status);
        let all_pass = gating.values().all(|s| *s == CheckStatus::Passing);
        drop(gating);
        let health = if all_pass {
            self.passed_once.store(true, Ordering::SeqCst);
            Health::Routable
        } else if self.passed_once.load(Ordering::SeqCst)
            || self.began.elapsed() >= self.settle_within
        {
            Health::Failing
        } else {
            Health::Settling
        };
        self.machine.checks.set_health(health);
    }
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Passing => "passing",
        CheckStatus::Warning => "warning",
        CheckStatus::Critical => "critical",
    }
}

/// Waits until the machine's checks let it take requests, for at most `within`.
pub async fn until_routable(machine: &Machine, within: Duration) -> Result<(), HealthError> {
    until_checks_pass(&machine.checks, within).await
}

async fn until_checks_pass(checks: &MachineChecks, within: Duration) -> Result<(), HealthError> {
    let mut health = checks.watch();
    let wait = health.wait_for(|h| *h != Health::Settling);
    match tokio::time::timeout(within, wait).await {
        Ok(Ok(h)) if *h == Health::Routable => Ok(()),
        Ok(_) => Err(HealthError::Failing),
        Err(_) => Err(HealthError::NotHealthy(within)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request waiting on a woken machine goes on the moment its checks pass, fails
    /// at once if they fail, and gives up at its deadline while they settle.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_checks() {
        let checks = Arc::new(MachineChecks::default());
        assert!(
            until_checks_pass(&checks, Duration::from_secs(1))
                .await
                .is_ok(),
            "no checks"
        );
        checks.begin(&["c".to_string()], true);
        let waiter = tokio::spawn({
            let checks = checks.clone();
            async move { until_checks_pass(&checks, Duration::from_secs(5)).await }
        });
        tokio::time::advance(Duration::from_secs(2)).await;
        checks.set_health(Health::Routable);
        assert!(waiter.await.unwrap().is_ok());
        checks.set_health(Health::Failing);
        let failing = until_checks_pass(&checks, Duration::from_secs(5)).await;
        assert!(matches!(failing, Err(HealthError::Failing)));
        checks.set_health(Health::Settling);
        let slow = until_checks_pass(&checks, Duration::from_secs(5)).await;
        assert!(matches!(slow, Err(HealthError::NotHealthy(_))));
    }
}
