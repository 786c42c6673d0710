//! The registry: every app and machine, in memory for the proxy (read on each request)
//! and, for the machines hosted here, in SQLite for restarts. The control plane writes
//! it; the proxy only reads. In a cluster it is the node's whole view: machines hosted
//! here, and records of machines other nodes host, learnt from the cluster's shared
//! state (never written to SQLite); changes to machines hosted here are noted for the
//! cluster's publisher.

pub use super::app::App;
use super::changes::Changes;
use super::machine::Machine;
use super::nodes::Node;
use super::record::{ImageRef, MachineEvent, MachineRecord, MachineState, now_rfc3339};
use super::spec::MachineSpec;
use super::store::{AppRecord, Store, StoreError, StoredMachine};
use crate::addresses::{AddressPool, AddressRange};
use crate::config::LimitsConfig;
use crate::ids;
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

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

/// A machine record from another node that cannot be placed yet: its app is unknown.
#[derive(Debug, thiserror::Error)]
#[error("app `{0}` is not known here yet")]
pub struct UnknownApp(pub String);

/// How many generated names a create tries before it gives up. With the name space
/// `ids::machine_name` draws from, even an app of 100,000 machines fails a try less
/// than once in 400, so 32 tries in a row never all collide.
const MAX_NAME_ATTEMPTS: usize = 32;

pub struct Registry {
    apps: DashMap<String, Arc<App>>,
    /// The other nodes of a cluster, by name.
    nodes: DashMap<String, Arc<Node>>,
    store: Store,
    addresses: Mutex<AddressPool>,
    limits: LimitsConfig,
    /// Orders creations, so names and addresses are checked and taken atomically.
    creating: Mutex<()>,
    /// Where changes to machines hosted here are noted, once someone shares them.
    changes: OnceLock<Arc<Changes>>,
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
            nodes: DashMap::new(),
            store,
            addresses: Mutex::new(AddressPool::new(addresses)),
            limits: LimitsConfig::default(),
            creating: Mutex::new(()),
            changes: OnceLock::new(),
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
            let spec = spec_of(&machine.record);
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

    /// Every machine in the view, wherever it is hosted.
    pub fn all_machines(&self) -> Vec<Arc<Machine>> {
        self.apps.iter().flat_map(|a| a.machines()).collect()
    }

    /// The machines this node hosts (runs, stops, keeps in SQLite).
    pub fn local_machines(&self) -> Vec<Arc<Machine>> {
        let mut machines = self.all_machines();
        machines.retain(|m| m.is_local());
        machines
    }

    /// Changes to machines hosted here are noted from now on, for the caller to share.
    pub fn share_changes(&self) -> Arc<Changes> {
        self.changes.get_or_init(Arc::default).clone()
    }

    fn note(&self, machine: &Machine, record: &MachineRecord) {
        if let Some(changes) = self.changes.get().filter(|_| machine.is_local()) {
            changes.record(&machine.app, record);
        }
    }

    /// Notes every machine hosted here as changed, so all are shared again.
    pub fn republish(&self) {
        for machine in self.local_machines() {
            let record = machine.snapshot();
            self.note(&machine, &record);
        }
    }

    pub fn create_app(&self, name: &str, org_slug: &str) -> Result<AppRecord, RegistryError> {
        self.add_app(AppRecord::new(name, org_slug))
    }

    /// Registers a new app (in a cluster, once its name is claimed). The same record
    /// twice is one app: the cluster's view may bring it back before this returns.
    pub fn add_app(&self, record: AppRecord) -> Result<AppRecord, RegistryError> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(app) = self.apps.get(&record.name) {
            return match app.record.id == record.id {
                true => Ok(record),
                false => Err(RegistryError::AppTaken(record.name)),
            };
        }
        if self.apps.len() >= self.limits.apps {
            return Err(RegistryError::TooManyApps(self.limits.apps));
        }
        self.store.insert_app(&record)?;
        let name = record.name.clone();
        self.apps.insert(name, Arc::new(App::new(record.clone())));
        Ok(record)
    }

    /// An app created on another node. Kept in SQLite too, so machines created here for
    /// it still have their app after a restart while the cluster is unreachable.
    pub fn learn_app(&self, record: AppRecord) -> Result<(), RegistryError> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if self.apps.contains_key(&record.name) {
            return Ok(());
        }
        self.store.keep_app(&record)?;
        let name = record.name.clone();
        self.apps.insert(name, Arc::new(App::new(record)));
        Ok(())
    }

    /// Another node, made on first mention.
    pub fn node(&self, name: &str) -> Arc<Node> {
        if let Some(node) = self.nodes.get(name) {
            return node.clone();
        }
        let node = self.nodes.entry(name.to_string());
        node.or_insert_with(|| Arc::new(Node::new(name))).clone()
    }

    /// The other nodes, by name.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        let mut nodes: Vec<_> = self.nodes.iter().map(|n| n.clone()).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }

    /// Takes the record of a machine that `node` hosts, as it published it: new, newer,
    /// or destroyed. A record for a machine hosted here is ignored (this node alone
    /// writes those).
    pub fn learn_machine(
        &self,
        app_name: &str,
        record: MachineRecord,
        node: &Arc<Node>,
    ) -> Result<(), UnknownApp> {
        let app = self
            .app(app_name)
            .ok_or_else(|| UnknownApp(app_name.into()))?;
        let known = app.with_machines(|ms| ms.iter().find(|m| m.id == record.id).cloned());
        match known {
            Some(machine) if machine.is_local() => {}
            Some(machine) if record.state == MachineState::Destroyed => {
                machine.replace_record(record, None);
                app.remove(&machine);
            }
            Some(machine) => {
                let changed = machine.record().instance_id != record.instance_id;
                let spec = changed.then(|| spec_of(&record));
                machine.replace_record(record, spec);
            }
            None if record.state == MachineState::Destroyed => {}
            None => {
                let spec = spec_of(&record);
                let machine = Machine::hosted_by(Some(node.clone()), app_name, record, spec);
                app.push(Arc::new(machine));
            }
        }
        Ok(())
    }

    /// Drops a machine another node hosted and has forgotten.
    pub fn forget_remote(&self, id: &str) {
        for app in self.apps.iter() {
            let remote =
                app.with_machines(|ms| ms.iter().find(|m| m.id == id && !m.is_local()).cloned());
            if let Some(machine) = remote {
                app.remove(&machine);
            }
        }
    }

    /// Takes an app out of routing and out of reach of new machines; its machines are
    /// destroyed next, then `forget_app` drops its state.
    pub fn remove_app(&self, name: &str) -> Option<Arc<App>> {
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        self.apps.remove(name).map(|(_, app)| app)
    }

    /// Drops a deleted app's state, and in a cluster the records of its destroyed
    /// machines.
    pub fn forget_app(&self, app: &App) -> Result<(), RegistryError> {
        if let Some(changes) = self.changes.get() {
            for record in app.destroyed() {
                changes.forgotten(&record.id);
            }
        }
        Ok(self.store.delete_app(&app.record.name)?)
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
        self.note(&machine, &machine.record());
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
        self.note(machine, &record);
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
        self.note(machine, &record);
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
            // Its app is gone: nothing keeps the record, here or in the cluster.
            if let Some(changes) = self.changes.get() {
                changes.forgotten(&machine.id);
            }
            self.store.delete_machine(&machine.id)?;
            return Ok(());
        };
        app.remove(machine);
        if let Some(forgotten) = app.remember_destroyed(machine.snapshot()) {
            if let Some(changes) = self.changes.get() {
                changes.forgotten(&forgotten);
            }
            self.store.delete_machine(&forgotten)?;
        }
        Ok(())
    }
}

/// The typed config of a stored or published record (checked when it was accepted).
fn spec_of(record: &MachineRecord) -> MachineSpec {
    MachineSpec::from_config(&record.config).unwrap_or_default()
}

/// A generated name no machine of the app has: a collision is tried again, not
/// reported (the caller asked for no name in particular).
fn free_name(names: &HashSet<String>) -> Result<String, RegistryError> {
    std::iter::repeat_with(ids::machine_name)
        .take(MAX_NAME_ATTEMPTS)
        .find(|name| !names.contains(name))
        .ok_or(RegistryError::NoFreeName(MAX_NAME_ATTEMPTS))
}

#[cfg(test)]
mod tests;
