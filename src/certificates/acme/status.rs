//! Where each ACME hostname stands, as the API and `check` report it.

use instant_acme::ChallengeType;
use std::collections::VecDeque;
use std::time::SystemTime;

/// How many failures a hostname remembers (the newest).
pub const FAILURES_KEPT: usize = 5;

/// The order's state, in the words the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeStatus {
    /// Waiting for its first (or next) attempt.
    Pending,
    /// An order is running: the CA is validating the edge's answer.
    Validating,
    /// A certificate is held and served.
    Issued,
    /// The last attempt failed (the reason is in the failures); another follows after
    /// a backoff.
    Failed,
}

impl AcmeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeStatus::Pending => "pending",
            AcmeStatus::Validating => "validating",
            AcmeStatus::Issued => "issued",
            AcmeStatus::Failed => "failed",
        }
    }
}

/// The challenges the edge answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// On the HTTPS listener: needs only port 443, tried first.
    TlsAlpn01,
    /// On the HTTP listener.
    Http01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Http01 => "http-01",
        }
    }

    /// The one to try after this one failed (a CA that cannot reach one listener may
    /// reach the other).
    pub fn other(self) -> ChallengeKind {
        match self {
            ChallengeKind::TlsAlpn01 => ChallengeKind::Http01,
            ChallengeKind::Http01 => ChallengeKind::TlsAlpn01,
        }
    }

    pub(super) fn acme_type(self) -> ChallengeType {
        match self {
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            ChallengeKind::Http01 => ChallengeType::Http01,
        }
    }
}

/// A failed attempt and the CA's reason.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The ACME problem type (`urn:ietf:params:acme:error:connection`), or edgewake's
    /// own word where the CA said nothing.
    pub code: String,
    pub message: String,
    pub challenge: ChallengeKind,
    pub at: SystemTime,
}

/// One ACME hostname's state.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub status: AcmeStatus,
    /// Newest last.
    pub failures: VecDeque<Failure>,
    /// Orders placed for it since edgewake started.
    pub attempts: u32,
    pub next_attempt: Option<SystemTime>,
    /// The challenge that validated the certificate held.
    pub validated_by: Option<ChallengeKind>,
}

impl HostStatus {
    pub fn new(issued: bool) -> HostStatus {
        HostStatus {
            status: match issued {
                true => AcmeStatus::Issued,
                false => AcmeStatus::Pending,
            },
            failures: VecDeque::new(),
            attempts: 0,
            next_attempt: None,
            validated_by: None,
        }
    }

    pub(super) fn record_failure(&mut self, failure: Failure, issued: bool) {
        if self.failures.len() == FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back(failure);
        // A held certificate is still served while its renewal is retried.
        self.status = match issued {
            true => AcmeStatus::Issued,
            false => AcmeStatus::Failed,
        };
    }

    /// Whether waiting on this hostname can end: it has a certificate or has failed.
    pub fn settled(&self) -> bool {
        matches!(self.status, AcmeStatus::Issued | AcmeStatus::Failed)
    }
}
