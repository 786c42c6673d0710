//! Machine leases (Fly's `…/lease`): whoever holds the nonce may change the machine
//! until the lease expires; everyone else gets a conflict. Leases live in memory only:
//! they are short (seconds to minutes) and a restart of edgewake ends them.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The lease's owner as Fly reports it. edgewake has one operator token, not users.
pub const LEASE_OWNER: &str = "edgewake-operator";

/// A lease as the API shows it (Fly's `data` object).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LeaseView {
    /// Empty when shown to someone who does not hold it (GET).
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub owner: String,
    pub description: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("the machine is leased by someone else: send its fly-machine-lease-nonce")]
    Held,
    #[error("the machine has no lease")]
    NotHeld,
}

#[derive(Debug)]
struct Lease {
    view: LeaseView,
    expires: Instant,
}

/// A machine's lease, if any.
#[derive(Debug, Default)]
pub struct LeaseSlot(Mutex<Option<Lease>>);

impl LeaseSlot {
    fn live(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|l| l.expires <= Instant::now()) {
            *slot = None;
        }
        slot
    }

    /// Takes a new lease for `ttl`, or refreshes the one whose nonce is given. Returns
    /// the lease and whether it is new.
    pub fn acquire(
        &self,
        ttl: Duration,
        description: &str,
        nonce: Option<&str>,
    ) -> Result<(LeaseView, bool), LeaseError> {
        let mut slot = self.live();
        let (expires, expires_at) = deadline(ttl);
        if let Some(lease) = slot.as_mut() {
            if Some(lease.view.nonce.as_str()) != nonce {
                return Err(LeaseError::Held);
            }
            lease.expires = expires;
            lease.view.expires_at = expires_at;
            return Ok((lease.view.clone(), false));
        }
        let view = LeaseView {
            nonce: crate::ids::hex(&crate::ids::random_bytes::<16>()),
            expires_at,
            owner: LEASE_OWNER.into(),
            description: description.into(),
            version: crate::ids::ulid(),
        };
        *slot = Some(Lease {
            view: view.clone(),
            expires,
        });
        Ok((view, true))
    }

    /// The live lease, without its nonce.
    pub fn current(&self) -> Option<LeaseView> {
        self.live().as_ref().map(|l| LeaseView {
            nonce: String::new(),
            ..l.view.clone()
        })
    }

    /// Whether a change may go ahead: no live lease, or the caller holds it.
    pub fn check(&self, nonce: Option<&str>) -> Result<(), LeaseError> {
        match self.live().as_ref() {
            Some(lease) if Some(lease.view.nonce.as_str()) != nonce => Err(LeaseError::Held),
            _ => Ok(()),
        }
    }

    /// Ends the lease; only its holder may.
    pub fn release(&self, nonce: Option<&str>) -> Result<(), LeaseError> {
        let mut slot = self.live();
        match slot.as_ref() {
            None => Err(LeaseError::NotHeld),
            Some(lease) if Some(lease.view.nonce.as_str()) != nonce => Err(LeaseError::Held),
            Some(_) => {
                *slot = None;
                Ok(())
            }
        }
    }
}

/// When a lease of `ttl` taken now ends: on the runtime's clock (for expiry) and in
/// Unix seconds (for the API).
fn deadline(ttl: Duration) -> (Instant, u64) {
    let unix = SystemTime::now()
        .checked_add(ttl)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    (Instant::now() + ttl, unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    /// A lease blocks others until it expires; its holder may change and refresh it.
    #[tokio::test(start_paused = true)]
    async fn lease_blocks_others_until_it_expires() {
        let slot = LeaseSlot::default();
        assert_eq!(slot.check(None), Ok(()));
        let (lease, new) = slot.acquire(TTL, "deploy", None).unwrap();
        assert!(new && !lease.nonce.is_empty());
        assert_eq!(slot.check(None), Err(LeaseError::Held));
        assert_eq!(slot.check(Some("guess")), Err(LeaseError::Held));
        assert_eq!(slot.check(Some(&lease.nonce)), Ok(()));
        assert_eq!(slot.acquire(TTL, "other", None), Err(LeaseError::Held));

        tokio::time::advance(Duration::from_secs(20)).await;
        let (refreshed, new) = slot.acquire(TTL, "", Some(&lease.nonce)).unwrap();
        assert!(!new);
        assert_eq!(refreshed.nonce, lease.nonce);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            slot.check(None),
            Err(LeaseError::Held),
            "refresh extended it"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(slot.check(None), Ok(()), "expired");
        assert_eq!(slot.current(), None);
    }

    /// Only the holder releases; GET shows the lease without its nonce.
    #[tokio::test(start_paused = true)]
    async fn release_needs_the_nonce() {
        let slot = LeaseSlot::default();
        assert_eq!(slot.release(None), Err(LeaseError::NotHeld));
        let (lease, _) = slot.acquire(TTL, "d", None).unwrap();
        let shown = slot.current().unwrap();
        assert_eq!(
            (shown.nonce.as_str(), shown.version.as_str()),
            ("", lease.version.as_str())
        );
        assert_eq!(slot.release(Some("guess")), Err(LeaseError::Held));
        assert_eq!(slot.release(Some(&lease.nonce)), Ok(()));
        assert_eq!(slot.check(None), Ok(()));
    }
}
