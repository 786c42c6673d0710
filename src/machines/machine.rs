//! A machine as every part sees it: its record, its state (readable without locks by
//! the proxy), its config, its activity clock and its open tunnels. How it is started
//! and stopped is the `lifecycle`'s business.

use super::activity::{Activity, InFlight};
use super::checks::{MachineChecks, SharedChecks};
use super::lease::LeaseSlot;
use super::nodes::Node;
use super::record::{MachineRecord, MachineState};
use super::spec::MachineSpec;
use super::tunnels::Tunnels;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Machine {
    pub id: String,
    pub app: String,
    pub region: String,
    pub private_ip: Ipv4Addr,
    /// The node hosting the machine; `None` when it is hosted here (this node's driver
    /// runs it, SQLite keeps it, and this node alone writes its record).
    pub node: Option<Arc<Node>>,
    state: AtomicU8,
    state_tx: watch::Sender<MachineState>,
    /// Cordoned machines get no proxied traffic (a copy of `record.cordoned` the proxy
    /// reads without locks).
    cordoned: AtomicBool,
    pub lease: LeaseSlot,
    pub activity: Arc<Activity>,
    record: Mutex<MachineRecord>,
    spec: RwLock<Arc<MachineSpec>>,
    /// Open WebSockets and TCP tunnels, asked to close before a stop.
    pub tunnels: Tunnels,
    /// The current run of its health checks and what they found.
    pub checks: SharedChecks,
    /// The token the machine's own code presents to the API (`keepawake`); new at
    /// every start, given in its environment.
    token: Mutex<Option<String>>,
}

impl Machine {
    /// A machine hosted here.
    pub fn new(app: &str, record: MachineRecord, spec: MachineSpec) -> Machine {
        Machine::hosted_by(None, app, record, spec)
    }

    /// A machine hosted by `node` (`None`: here).
    pub fn hosted_by(
        node: Option<Arc<Node>>,
        app: &str,
        record: MachineRecord,
        spec: MachineSpec,
    ) -> Machine {
        let state = record.state;
        Machine {
            id: record.id.clone(),
            app: app.to_string(),
            region: record.region.clone(),
            private_ip: record.private_ip,
            node,
            state: AtomicU8::new(state as u8),
            state_tx: watch::channel(state).0,
            cordoned: AtomicBool::new(record.cordoned),
            lease: LeaseSlot::default(),
            activity: Arc::new(Activity::new()),
            record: Mutex::new(record),
            spec: RwLock::new(Arc::new(spec)),
            tunnels: Tunnels::default(),
            checks: Arc::new(MachineChecks::default()),
            token: Mutex::new(None),
        }
    }

    pub fn state(&self) -> MachineState {
        MachineState::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// Sets the state the proxy sees. Callers also record it (see `Registry::transition`).
    pub(crate) fn set_state(&self, state: MachineState) {
        self.state.store(state as u8, Ordering::SeqCst);
        self.state_tx.send_replace(state);
    }

    /// Follows state changes (for waiting on a state).
    pub fn subscribe(&self) -> watch::Receiver<MachineState> {
        self.state_tx.subscribe()
    }

    pub fn spec(&self) -> Arc<MachineSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn record(&self) -> MutexGuard<'_, MachineRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the record with its checks' last results, for the API.
    pub fn snapshot(&self) -> MachineRecord {
        let mut record = self.record().clone();
        record.checks = self.checks.snapshot();
        record
    }

    /// Counts a request in; the caller must check the state afterwards (see `reaper`).
    pub fn enter(&self) -> InFlight {
        InFlight::enter(&self.activity)
    }

    /// Counts a request in that must not keep the machine awake (a monitor's): it
    /// holds off a stop while in flight but does not restart the idle clock.
    pub fn enter_quietly(&self) -> InFlight {
        InFlight::enter_quietly(&self.activity)
    }

    /// A new token for the run about to start (the old one stops working).
    pub fn issue_token(&self) -> String {
        let token = crate::ids::api_token();
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        token
    }

    /// Whether `presented` is the current run's token.
    pub fn token_matches(&self, presented: &str) -> bool {
        let token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        token
            .as_deref()
            .is_some_and(|t| crate::ids::constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }

    pub fn is_cordoned(&self) -> bool {
        self.cordoned.load(Ordering::SeqCst)
    }

    /// Sets what the proxy sees. Callers also record it (see `Registry::set_cordoned`).
    pub(crate) fn set_cordoned(&self, cordoned: bool) {
        self.cordoned.store(cordoned, Ordering::SeqCst);
    }

    /// Replaces the typed view of the config (an update); the caller holds the
    /// lifecycle lock, so no start reads half of it.
    pub(crate) fn set_spec(&self, spec: MachineSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }

    /// Whether this node hosts the machine (runs it, and writes its record).
    pub fn is_local(&self) -> bool {
        self.node.is_none()
    }

    /// Whether requests can reach it: hosted here, or on a node that is up.
    pub fn is_reachable(&self) -> bool {
        self.node.as_ref().is_none_or(|node| node.is_up())
    }

    /// Takes a newer record of a machine hosted elsewhere, as its node published it.
    pub(crate) fn replace_record(&self, record: MachineRecord, spec: Option<MachineSpec>) {
        if let Some(spec) = spec {
            self.set_spec(spec);
        }
        self.set_cordoned(record.cordoned);
        let state = record.state;
        *self.record() = record;
        self.set_state(state);
    }

    /// Whether the machine is taking no part in routing (destroyed or on its way).
    pub fn is_gone(&self) -> bool {
        matches!(
            self.state(),
            MachineState::Destroying | MachineState::Destroyed
        )
    }
}
