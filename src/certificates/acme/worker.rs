//! One ACME hostname's life: wait until the next attempt is due (now without a
//! certificate, at renewal time with one, after the backoff following a failure, or
//! when `check` asks), order, keep and serve what was issued.

use super::order::{self, OrderError};
use super::status::{AcmeStatus, ChallengeKind, Failure};
use super::timing::{renewal_at, renewal_time};
use super::{Acme, Tracked};
use crate::certificates::disk::Source;
use crate::certificates::pem::Cert;
use instant_acme::CertificateIdentifier;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The least wait before renewing a held certificate: a CA that issues certificates
/// already due for renewal (back-dated, or very short-lived) must not be asked again
/// in a loop.
const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(1);

impl Acme {
    pub(super) async fn run(self: Arc<Self>, host: String, tracked: Arc<Tracked>) {
        let mut failures = 0u32;
        let mut kind = ChallengeKind::TlsAlpn01;
        loop {
            let due = self.next_attempt(&host, failures).await;
            tracked.status.send_modify(|s| s.next_attempt = Some(due));
            tokio::select! {
                () = sleep_until(due) => {}
                () = tracked.nudge.notified() => {}
                () = tracked.cancel.cancelled() => return,
            }
            let outcome = tokio::select! {
                outcome = self.attempt(&host, &tracked, kind) => outcome,
                // Dropping the order takes its published answers down.
                () = tracked.cancel.cancelled() => return,
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    self.record(&host, &tracked, kind, &error);
                    kind = kind.other();
                }
            }
        }
    }

    /// When the next order is due.
    async fn next_attempt(&self, host: &str, failures: u32) -> SystemTime {
        let now = SystemTime::now();
        if failures > 0 {
            return now + self.backoff.after(failures);
        }
        match self.keeper.held(host).acme {
            Some(cert) => {
                let rule = renewal_at(cert.not_before, cert.not_after);
                let window = self.renewal_window(&cert).await;
                renewal_time(rule, window, random_fraction()).max(now + MIN_RENEWAL_WAIT)
            }
            None => now,
        }
    }

    /// The renewal window the CA suggests (ACME Renewal Information), where it
    /// supports it and the account is open already (no account is opened just to ask).
    async fn renewal_window(&self, cert: &Cert) -> Option<(SystemTime, SystemTime)> {
        let account = self.account.get()?;
        let id = CertificateIdentifier::try_from(cert.leaf()).ok()?;
        let (info, _) = account.renewal_info(&id).await.ok()?;
        let window = info.suggested_window;
        Some((window.start.into(), window.end.into()))
    }

    async fn attempt(
        &self,
        host: &str,
        tracked: &Tracked,
        kind: ChallengeKind,
    ) -> Result<(), OrderError> {
        if self.keeper.held(host).acme.is_none() {
            tracked
                .status
                .send_modify(|s| s.status = AcmeStatus::Validating);
        }
        let _slot = self.slots.acquire().await;
        let account = self
            .account()
            .await
            .map_err(|e| OrderError::Account(e.to_string()))?;
        self.orders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracked.status.send_modify(|s| s.attempts += 1);
        let cert = order::obtain(&account, host, kind, &self.challenges).await?;
        let wanted = || self.hostnames.get(host).is_some_and(|h| h.acme_requested);
        let expires = cert.not_after;
        // Said before the certificate is served, so no reader sees it without; the
        // status turns `issued` only after, so no waiter goes on before it is served.
        tracked.status.send_modify(|s| s.validated_by = Some(kind));
        self.keeper
            .put(host, Source::Acme, cert, wanted)
            .map_err(OrderError::Keep)?;
        tracked
            .status
            .send_modify(|s| s.status = AcmeStatus::Issued);
        tracing::info!(%host, challenge = kind.as_str(), "certificate issued, valid until {}",
            humantime::format_rfc3339_seconds(expires));
        Ok(())
    }

    fn record(&self, host: &str, tracked: &Tracked, kind: ChallengeKind, error: &OrderError) {
        tracing::warn!(%host, challenge = kind.as_str(), "certificate order failed: {error}");
        let issued = self.keeper.held(host).acme.is_some();
        let failure = Failure {
            code: error.code(),
            message: error.to_string(),
            challenge: kind,
            at: SystemTime::now(),
        };
        tracked
            .status
            .send_modify(|s| s.record_failure(failure, issued));
    }
}

async fn sleep_until(due: SystemTime) {
    let wait = due
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
}

/// A point in a renewal window, so many edges do not renew at the same moment.
fn random_fraction() -> f64 {
    let [a, b] = crate::ids::random_bytes::<2>();
    f64::from(u16::from_be_bytes([a, b])) / f64::from(u16::MAX)
}
