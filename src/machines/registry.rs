//! The registry: every app and machine, in memory for the proxy (read on each request)
//! and in SQLite for restarts. The control plane writes it; the proxy only reads.
//! Later edges in several regions will share this through a distributed store, so it
//! stays a small interface.

use super::machine::Machine;
use super::record::{ImageRef, MachineEvent, MachineRecord, MachineState, now_rfc3339};
use super::spec::MachineSpec;
use super::store::{AppRecord, Store, StoreError, StoredMachine};
use crate::addresses::{AddressPool, AddressRange};
use crate::config::LimitsConfig;
use crate::ids;
use dashmap::DashMap;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// How many destroyed machines an app remembers (for `include_deleted`); older ones are
/// forgotten for good.
pub const MAX_DESTROYED_KEPT: usize = 100;

/// An app and its machines.
#[derive(Debug)]
pub struct App {
    pub record: AppRecord,
    machines: RwLock<Vec<Arc<Machine>>>,
    /// The machines' names (they never change), so a create checks one in O(1).
    names: Mutex<HashSet<String>>,
    /// Records of destroyed machines, oldest first: listed only when asked for.
    destroyed: Mutex<VecDeque<MachineRecord>>,
}

impl App {
    fn new(record: AppRecord) -> App {
        App {
            record,
            machines: RwLock::new(Vec::new()),
            names: Mutex::new(HashSet::new()),
            destroyed: Mutex::new(VecDeque::new()),
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records of the app's destroyed machines, oldest first.
    pub fn destroyed(&self) -> Vec<MachineRecord> {
        let destroyed = self.destroyed.lock().unwrap_or_else(|p| p.into_inner());
        destroyed.iter().cloned().collect()
    }

    /// Keeps a destroyed machine's record; returns the id of one forgotten to make room.
    fn remember_destroyed(&self, record: MachineRecord) -> Option<String> {
        let mut destroyed = self.destroyed.lock().unwrap_or_else(|p| p.into_inner());
        destroyed.push_back(record);
        (destroyed.len() > MAX_DESTROYED_KEPT)
            .then(|| destroyed.pop_front().map(|r| r.id))
            .flatten()
    }

    /// The app's machines, oldest first.
    pub fn machines(&self) -> Vec<Arc<Machine>> {
        self.machines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` over the machines without copying the list (the proxy's hot path).
    pub fn with_machines<T>(&self, f: impl FnOnce(&[Arc<Machine>]) -> T) -> T {
        f(&self.machines.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, machine: Arc<Machine>) {
        self.names().insert(machine.record().name.clone());
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(machine);
    }

    fn remove(&self, machine: &Machine) {
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|m| m.id != machine.id);
        self.names().remove(&machine.record().name);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("app `{0}` already exists")]
    AppTaken(String),
    #[error("a machine named `{0}` already exists in this app")]
    NameTaken(String),
    #[error("app `{0}` is being deleted")]
    AppGone(String),
    #[error("no private address left in {0}: destroy machines or widen the range")]
    NoAddress(String),
    #[error("there are {0} apps, the most `limits.apps` allows")]
    TooManyApps(usize),
    #[error("app `{app}` has {max} machines, the most `limits.machines_per_app` allows")]
    TooManyMachines { app: String, max: usize },
    #[error("no free generated name after {0} tries: give the machine a name")]
    NoFreeName(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the API asks for when it creates a machine.
pub struct NewMachine {
    pub name: Option<String>,
    pub region: String,
    pub config: serde_json::Value,
    pub spec: MachineSpec,
    /// Fly's `skip_service_registration`: created cordoned.
    pub cordoned: bool,
}

/// How many generated names a create tries before it gives up. With the name space
/// `ids::machine_name` draws from, even an app of 100,000 machines fails a try less
/// than once in 400, so 32 tries in a row never all collide.
const MAX_NAME_ATTEMPTS: usize = 32;

pub struct Registry {
    apps: DashMap<String, Arc<App>>,
    store: Store,
    addresses: Mutex<AddressPool>,
    limits: LimitsConfig,
    /// Orders creations, so names and addresses are checked and taken atomically.
    creating: Mutex<()>,
}

impl Registry {
    /// Opens the registry from the state database. Machines come back as stored; the
    /// supervisor then reconciles them with reality.
    pub fn load(
        store: Store,
        addresses: AddressRange,
    ) -> Result<(Registry, Vec<StoredMachine>), StoreError> {
        let registry = Registry {
            apps: DashMap::new(),
            store,
            addresses: Mutex::new(AddressPool::new(addresses)),
            limits: LimitsConfig::default(),
            creating: Mutex::new(()),
        };
        for app in registry.store.apps()? {
            registry
                .apps
                .insert(app.name.clone(), Arc::new(App::new(app)));
        }
        let (mut destroyed, stored): (Vec<_>, Vec<_>) = registry
            .store
            .machines()?
            .into_iter()
            .partition(|m| m.record.state == MachineState::Destroyed);
        destroyed.sort_by(|a, b| a.record.updated_at.cmp(&b.record.updated_at));
        for machine in destroyed {
            if let Some(app) = registry.apps.get(&machine.app) {
                app.remember_destroyed(machine.record);
            }
        }
        for machine in &stored {
            registry.pool().hold(machine.record.private_ip);
            let spec = MachineSpec::from_config(&machine.record.config).unwrap_or_default();
            let live = Arc::new(Machine::new(&machine.app, machine.record.clone(), spec));
            if let Some(app) = registry.apps.get(&machine.app) {
                app.push(live);
            }
        }
        Ok((registry, stored))
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, AddressPool> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry holding creations to `limits` (else the defaults).
    pub fn with_limits(mut self, limits: LimitsConfig) -> Registry {
        self.limits = limits;
        self
    }

    pub fn app(&self, name: &str) -> Option<Arc<App>> {
        self.apps.get(name).map(|a| a.clone())
    }

    pub fn apps(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<_> = self.apps.iter().map(|a| a.clone()).collect();
        apps.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        apps
    }

    pub fn machine(&self, app: &str, id: &str) -> Option<Arc<Machine>> {
        self.app(app)?
            .with_machines(|ms| ms.iter().find(|m| m.id == id).cloned())
    }

    pub fn all_machines(&self) -> Vec<Arc<Machine>> {
        self.apps.iter().flat_map(|a| a.machines()).collect()
    }

    pub fn create_app(&self, name: &str, org_slug: &str) -> Result<AppRecord, RegistryError> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if self.apps.contains_key(name) {
            return Err(RegistryError::AppTaken(name.into()));
        }
        if self.apps.len() >= self.limits.apps {
            return Err(RegistryError::TooManyApps(self.limits.apps));
        }
        let record = AppRecord {
            id: ids::app_id(),
            name: name.into(),
            org_slug: org_slug.into(),
            created_at: now_rfc3339(),
        };
        self.store.insert_app(&record)?;
        self.apps
            .insert(name.into(), Arc::new(App::new(record.clone())));
        Ok(record)
    }

    /// Takes an app out of routing and out of reach of new machines; its machines are
    /// destroyed next, then `forget_app` drops its state.
    pub fn remove_app(&self, name: &str) -> Option<Arc<App>> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        self.apps.remove(name).map(|(_, app)| app)
    }

    pub fn forget_app(&self, name: &str) -> Result<(), RegistryError> {
        Ok(self.store.delete_app(name)?)
    }

    /// Creates a machine record in state `created`, with its own private address.
    pub fn create_machine(
        &self,
        app: &App,
        new: NewMachine,
    ) -> Result<Arc<Machine>, RegistryError> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.limits.machines_per_app;
        if app.with_machines(<[_]>::len) >= max {
            let app = app.record.name.clone();
            return Err(RegistryError::TooManyMachines { app, max });
        }
        let name = {
            let names = app.names();
            match new.name {
                Some(name) if names.contains(&name) => {
                    return Err(RegistryError::NameTaken(name));
                }
                Some(name) => name,
                None => free_name(&names)?,
            }
        };
        let private_ip = self.take_address()?;
        let now = now_rfc3339();
        let mut record = MachineRecord {
            id: ids::machine_id(),
            name,
            state: MachineState::Created,
            region: new.region,
            instance_id: crate::ids::ulid(),
            private_ip,
            image_ref: ImageRef::parse(&new.spec.image),
            config: new.config,
            created_at: now.clone(),
            updated_at: now,
            events: Vec::new(),
            cordoned: new.cordoned,
            checks: Vec::new(),
        };
        record.push_event(MachineEvent::new(
            "launch",
            MachineState::Created,
            super::EventSource::User,
        ));
        if let Err(e) = self.store.save_machine(&app.record.name, &record) {
            self.pool().release(private_ip);
            return Err(e.into());
        }
        let machine = Arc::new(Machine::new(&app.record.name, record, new.spec));
        app.push(machine.clone());
        Ok(machine)
    }

    /// A private address for a new machine: one no machine holds and no socket (of
    /// another edgewake, or anything else on this host) listens on.
    fn take_address(&self) -> Result<std::net::Ipv4Addr, RegistryError> {
        let mut pool = self.pool();
        let range = pool.range();
        let busy = crate::listening::addresses_in(range);
        pool.take(&busy)
            .ok_or_else(|| RegistryError::NoAddress(range.to_string()))
    }

    /// Moves a machine to `state`, logs `event`, and persists the record. The record is
    /// written before the state is announced, so whoever wakes on the change (a `wait`)
    /// reads the event that came with it.
    pub fn transition(&self, machine: &Machine, state: MachineState, event: Option<MachineEvent>) {
        let mut record = machine.record();
        record.state = state;
        if let Some(event) = event {
            record.push_event(event);
        }
        machine.set_state(state);
        if state != MachineState::Started {
            // Whatever took it out of `started`: no check runs against it any more.
            machine.checks.end();
        }
        if let Err(e) = self.store.save_machine(&machine.app, &record) {
            tracing::error!(machine = %machine.id, "cannot persist state {}: {e}", state.as_str());
        }
    }

    /// Cordons or uncordons a machine, for the proxy at once and in the record.
    pub fn set_cordoned(&self, machine: &Machine, cordoned: bool) {
        machine.set_cordoned(cordoned);
        self.edit(machine, |record| record.cordoned = cordoned);
    }

    /// Changes a machine's record and persists it.
    pub fn edit<T>(&self, machine: &Machine, change: impl FnOnce(&mut MachineRecord) -> T) -> T {
        let mut record = machine.record();
        let out = change(&mut record);
        record.updated_at = now_rfc3339();
        if let Err(e) = self.store.save_machine(&machine.app, &record) {
            tracing::error!(machine = %machine.id, "cannot persist the machine: {e}");
        }
        out
    }

    /// Remembers the pid of a running machine (or forgets it), for crash recovery.
    pub fn set_pid(&self, machine: &Machine, pid: Option<u32>) {
        if let Err(e) = self.store.set_pid(&machine.id, pid) {
            tracing::error!(machine = %machine.id, "cannot persist pid: {e}");
        }
    }

    /// Takes a destroyed machine out of its app. Its record stays (state `destroyed`)
    /// for `include_deleted` listings, unless the app is gone too.
    pub fn remove_machine(&self, machine: &Machine) -> Result<(), RegistryError> {
        self.pool().release(machine.private_ip);
        let Some(app) = self.app(&machine.app) else {
            self.store.delete_machine(&machine.id)?;
            return Ok(());
        };
        app.remove(machine);
        if let Some(forgotten) = app.remember_destroyed(machine.snapshot()) {
            self.store.delete_machine(&forgotten)?;
        }
        Ok(())
    }
}

/// A generated name no machine of the app has: a collision is tried again, not
/// reported (the caller asked for no name in particular).
fn free_name(names: &HashSet<String>) -> Result<String, RegistryError> {
    std::iter::repeat_with(ids::machine_name)
        .take(MAX_NAME_ATTEMPTS)
        .find(|name| !names.contains(name))
        .ok_or(RegistryError::NoFreeName(MAX_NAME_ATTEMPTS))
}
