//! The registry as a cluster node's view: other nodes' machines.

use super::*;

fn record(id: &str, state: MachineState) -> MachineRecord {
    MachineRecord::sample(id, state)
}

/// Another node's machine enters the view, changes in place, and leaves it when
/// destroyed, without ever being written to this node's SQLite; its changes are not
/// this node's to share. A record waits for its app.
#[test]
fn remote_machines_live_in_the_view_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let (registry, _) = Registry::load(store, "127.9.0.0/24".parse().unwrap()).unwrap();
    let changes = registry.share_changes();
    let node = registry.node("syd-1");
    let early = registry.learn_machine("shop", record("aa", MachineState::Stopped), &node);
    assert!(early.is_err(), "no app yet");
    registry
        .learn_app(AppRecord::new("shop", "personal"))
        .unwrap();
    registry
        .learn_machine("shop", record("aa", MachineState::Stopped), &node)
        .unwrap();
    let machine = registry.machine("shop", "aa").unwrap();
    registry
        .learn_machine("shop", record("aa", MachineState::Started), &node)
        .unwrap();
    assert_eq!(machine.state(), MachineState::Started, "changed in place");
    assert!(registry.local_machines().is_empty());
    assert!(registry.store.machines().unwrap().is_empty());
    assert_eq!(registry.store.apps().unwrap().len(), 1, "the app is kept");
    assert!(changes.take().is_empty());
    registry
        .learn_machine("shop", record("aa", MachineState::Destroyed), &node)
        .unwrap();
    assert!(registry.machine("shop", "aa").is_none());
}

/// A machine of a node never heard from (its heartbeat not seen yet, or gone) is not
/// reachable, so requests skip it instead of trying a node with no known address; a
/// heartbeat makes it reachable.
#[test]
fn machines_of_an_unheard_node_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let (registry, _) = Registry::load(store, "127.9.0.0/24".parse().unwrap()).unwrap();
    registry
        .learn_app(AppRecord::new("shop", "personal"))
        .unwrap();
    let node = registry.node("syd-1");
    registry
        .learn_machine("shop", record("aa", MachineState::Stopped), &node)
        .unwrap();
    let machine = registry.machine("shop", "aa").unwrap();
    assert!(!machine.is_reachable(), "no heartbeat heard yet");
    node.set_up(true);
    assert!(machine.is_reachable());
}
