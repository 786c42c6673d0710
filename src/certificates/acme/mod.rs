//! ACME issuance (RFC 8555, instant-acme): one background worker per ACME hostname
//! orders its certificate, retries failures with backoff (alternating TLS-ALPN-01 and
//! HTTP-01, both answered by the edge itself), and renews when a third of the lifetime
//! remains. The account is opened on first use. At most `MAX_CONCURRENT_ORDERS` orders
//! run at once, whatever asks for them.

pub mod account;
pub mod on_demand;
pub mod order;
pub mod status;
pub mod timing;
mod worker;

use super::keeper::Keeper;
use crate::config::AcmeConfig;
use crate::hostnames::Hostnames;
use crate::tls::challenges::Challenges;
use account::AccountError;
use dashmap::DashMap;
use instant_acme::Account;
use status::HostStatus;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use timing::Backoff;
use tokio::sync::{Notify, OnceCell, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Orders in flight at once; more wait for a slot.
pub const MAX_CONCURRENT_ORDERS: usize = 4;

/// One ACME hostname's worker, as the rest of edgewake reaches it.
struct Tracked {
    status: watch::Sender<HostStatus>,
    /// Wakes the worker for an attempt now (`check`).
    nudge: Notify,
    cancel: CancellationToken,
}

pub struct Acme {
    config: AcmeConfig,
    data_dir: PathBuf,
    backoff: Backoff,
    account: OnceCell<Account>,
    keeper: Arc<Keeper>,
    hostnames: Arc<Hostnames>,
    challenges: Arc<Challenges>,
    tracked: DashMap<String, Arc<Tracked>>,
    orders: AtomicU64,
    slots: Semaphore,
    cancel: CancellationToken,
    workers: TaskTracker,
    /// Where the hostnames' workers run: the runtime `Acme` was made on (the main one),
    /// also for an on-demand order begun by a handshake on an edge worker.
    runtime: tokio::runtime::Handle,
}

/// What `Acme` works with.
pub struct AcmeParts {
    pub keeper: Arc<Keeper>,
    pub hostnames: Arc<Hostnames>,
    pub challenges: Arc<Challenges>,
    /// Ends every worker (shutdown).
    pub cancel: CancellationToken,
}

impl Acme {
    /// Made within the runtime its hostnames' workers are to run on (the main one).
    pub fn new(
        config: AcmeConfig,
        data_dir: PathBuf,
        backoff: Backoff,
        parts: AcmeParts,
    ) -> Arc<Acme> {
        Arc::new(Acme {
            config,
            data_dir,
            backoff,
            account: OnceCell::new(),
            keeper: parts.keeper,
            hostnames: parts.hostnames,
            challenges: parts.challenges,
            tracked: DashMap::new(),
            orders: AtomicU64::new(0),
            slots: Semaphore::new(MAX_CONCURRENT_ORDERS),
            cancel: parts.cancel,
            workers: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Starts the hostname's worker, unless it runs already.
    pub fn track(self: &Arc<Self>, host: &str) {
        let issued = self.keeper.held(host).acme.is_some();
        let tracked = match self.tracked.entry(host.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(_) => return,
            dashmap::mapref::entry::Entry::Vacant(slot) => {
                let tracked = Arc::new(Tracked {
                    status: watch::Sender::new(HostStatus::new(issued)),
                    nudge: Notify::new(),
                    cancel: self.cancel.child_token(),
                });
                slot.insert(tracked.clone());
                tracked
            }
        };
        let worker = self.clone().run(host.to_string(), tracked);
        self.workers.spawn_on(worker, &self.runtime);
    }

    /// Stops the hostname's worker (its order, if one runs, is dropped).
    pub fn untrack(&self, host: &str) {
        if let Some((_, tracked)) = self.tracked.remove(host) {
            tracked.cancel.cancel();
        }
    }

    pub fn status(&self, host: &str) -> Option<HostStatus> {
        self.tracked.get(host).map(|t| t.status.borrow().clone())
    }

    /// Follows the hostname's status.
    pub fn watch(&self, host: &str) -> Option<watch::Receiver<HostStatus>> {
        self.tracked.get(host).map(|t| t.status.subscribe())
    }

    /// Asks for an attempt now rather than after the backoff (`check`); a hostname
    /// with a certificate is left to its renewal.
    pub fn nudge(&self, host: &str) {
        if let Some(tracked) = self.tracked.get(host)
            && tracked.status.borrow().status != status::AcmeStatus::Issued
        {
            tracked.nudge.notify_one();
        }
    }

    /// Orders placed since start.
    pub fn orders_placed(&self) -> u64 {
        // A count for tests and operators; nothing is ordered by it.
        self.orders.load(Ordering::Relaxed)
    }

    /// Waits for every worker to end (after the cancel token).
    pub async fn stopped(&self) {
        self.workers.close();
        self.workers.wait().await;
    }

    /// The account, opened at the first order.
    async fn account(&self) -> Result<Account, AccountError> {
        self.account
            .get_or_try_init(|| account::open(&self.config, &self.data_dir))
            .await
            .cloned()
    }
}
