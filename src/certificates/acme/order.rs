//! One order for one hostname (RFC 8555 §7.4): the edge publishes its answer to the
//! chosen challenge, tells the CA it is ready, waits for validation, finalizes with a
//! fresh P-256 key and fetches the chain. Answers are taken down when the order ends,
//! however it ends.

use super::status::ChallengeKind;
use crate::certificates::pem::{Cert, PemError};
use crate::tls::challenges::{ChallengeError, Challenges};
use instant_acme::{
    Account, AuthorizationStatus, Identifier, NewOrder, Order, OrderStatus, Problem, RetryPolicy,
};
use std::sync::Arc;
use std::time::Duration;

/// How the order is polled while the CA validates and issues: quick first (a CA such as
/// Pebble validates in milliseconds), then backing off, for at most a minute.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(50))
    .backoff(2.0)
    .timeout(Duration::from_secs(60));

/// Problem type for a failure the CA did not describe.
const NO_PROBLEM_TYPE: &str = "edgewake:order";

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{}", describe(.0))]
    Rejected(Problem),
    #[error("{0}")]
    Acme(instant_acme::Error),
    #[error("the CA offers no {} challenge for this name", .0.as_str())]
    NoChallenge(ChallengeKind),
    #[error(transparent)]
    Answer(#[from] ChallengeError),
    #[error("the CA's certificate cannot be used: {0}")]
    Certificate(#[from] PemError),
    #[error("the ACME account: {0}")]
    Account(String),
    #[error("cannot keep the certificate: {0}")]
    Keep(std::io::Error),
}

impl From<instant_acme::Error> for OrderError {
    fn from(error: instant_acme::Error) -> OrderError {
        match error {
            instant_acme::Error::Api(problem) => OrderError::Rejected(problem),
            other => OrderError::Acme(other),
        }
    }
}

impl OrderError {
    /// The ACME problem type, for programs.
    pub fn code(&self) -> String {
        match self {
            OrderError::Rejected(problem) => problem
                .r#type
                .clone()
                .unwrap_or_else(|| NO_PROBLEM_TYPE.into()),
            _ => NO_PROBLEM_TYPE.into(),
        }
    }
}

/// The CA's own words: its detail, and each subproblem's.
fn describe(problem: &Problem) -> String {
    let mut text = problem
        .detail
        .clone()
        .unwrap_or_else(|| "the CA refused without a reason".into());
    for sub in &problem.subproblems {
        if let Some(detail) = &sub.detail {
            text.push_str("; ");
            text.push_str(detail);
        }
    }
    text
}

/// Orders a certificate for `host`, validated by `kind`.
pub async fn obtain(
    account: &Account,
    host: &str,
    kind: ChallengeKind,
    challenges: &Arc<Challenges>,
) -> Result<Cert, OrderError> {
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let _answers = answer(&mut order, host, kind, challenges).await?;
    match order.poll_ready(&POLL).await? {
        OrderStatus::Ready => {}
        _ => return Err(why_invalid(&mut order).await),
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&POLL).await?;
    Ok(Cert::parse(&chain_pem, &key_pem)?)
}

/// Publishes the answer to each pending authorization and tells the CA to validate.
async fn answer(
    order: &mut Order,
    host: &str,
    kind: ChallengeKind,
    challenges: &Arc<Challenges>,
) -> Result<Vec<crate::tls::challenges::Published>, OrderError> {
    let mut published = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        if authorization.status == AuthorizationStatus::Valid {
            continue; // validated recently; the CA reuses it
        }
        let mut challenge = authorization
            .challenge(kind.acme_type())
            .ok_or(OrderError::NoChallenge(kind))?;
        let key_authorization = challenge.key_authorization();
        published.push(match kind {
            ChallengeKind::Http01 => {
                challenges.publish_http01(&challenge.token, key_authorization.as_str())
            }
            ChallengeKind::TlsAlpn01 => {
                challenges.publish_tls_alpn01(host, key_authorization.digest().as_ref())?
            }
        });
        challenge.set_ready().await?;
    }
    Ok(published)
}

/// Why the CA found the order invalid: the error of a challenge it tried, else the
/// order's own.
async fn why_invalid(order: &mut Order) -> OrderError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.clone()) {
            return OrderError::Rejected(problem);
        }
    }
    match order.state().error.clone() {
        Some(problem) => OrderError::Rejected(problem),
        None => OrderError::Acme(instant_acme::Error::Str("the order became invalid")),
    }
}
