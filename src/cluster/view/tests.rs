//! The view fed records directly, as its watches would: no NATS server answers.

use super::*;
use crate::cluster::Advertised;
use crate::config::ClusterConfig;
use crate::drivers::fake::FakeDriver;
use crate::lifecycle::Settings;
use crate::machines::store::Store;
use crate::machines::{MachineRecord, Registry};
use nix::sys::signal::Signal;

/// A view of node `here`, whose NATS server (a listener that never answers) is
/// never reached; the listener and the state directory live as long as the view.
async fn view() -> (Arc<View>, std::net::TcpListener, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let (registry, _) = Registry::load(store, "127.9.0.0/24".parse().unwrap()).unwrap();
    let registry = Arc::new(registry);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = silent.local_addr().unwrap();
    let config = ClusterConfig {
        node: "here".into(),
        nats: vec![format!("nats://{local}")],
        backhaul: local,
        advertise: None,
        secret_env: "EDGEWAKE_TEST_SECRET".into(),
        heartbeat_timeout: Duration::from_secs(3),
        max_backhaul_connections: 1,
    };
    let advertised = Advertised {
        backhaul: local,
        api: local,
    };
    let cluster = Cluster::join(&config, "syd", advertised, registry.clone())
        .await
        .unwrap();
    let settings = Settings {
        idle_timeout: Duration::from_secs(60),
        reap_interval: Duration::from_secs(1),
        wake_timeout: Duration::from_secs(10),
        probe_interval: Duration::from_millis(5),
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(5),
        queue_timeout: Duration::from_secs(2),
        max_queued: 1,
    };
    let supervisor = Arc::new(Supervisor::new(
        registry,
        Arc::new(FakeDriver::new()),
        settings,
    ));
    (View::new(cluster, supervisor), silent, dir)
}

/// A stopped machine `id` of app `app` hosted by node `syd-1`.
fn machine(app: &str, id: &str) -> MachineEntry {
    MachineEntry {
        app: app.into(),
        node: "syd-1".into(),
        record: MachineRecord::sample(id, MachineState::Stopped),
    }
}

/// Machine records of apps the view has not seen are kept for when the app arrives,
/// but at most `MAX_UNPLACED` of them, over all apps: the records past it are dropped,
/// so what peers publish cannot grow a node's memory without end.
#[tokio::test]
async fn machines_waiting_for_their_app_are_bounded() {
    let (view, _silent, _dir) = view().await;
    view.place(machine("early", "e0"));
    for n in 1..MAX_UNPLACED + 1 {
        view.place(machine("later", &format!("l{n}")));
    }
    let waiting = |view: &View| lock(&view.unplaced).values().map(Vec::len).sum::<usize>();
    assert_eq!(waiting(&view), MAX_UNPLACED, "one record past the bound");

    view.app_arrived(AppRecord::new("later", "personal"));
    let later = view.cluster.registry.app("later").unwrap();
    assert_eq!(later.machines().len(), MAX_UNPLACED - 1, "all that waited");
    assert!(
        later
            .machines()
            .iter()
            .all(|m| m.id != format!("l{MAX_UNPLACED}"))
    );
    assert_eq!(waiting(&view), 1, "the other app's record waits on");

    view.place(machine("later2", "x1"));
    assert_eq!(waiting(&view), 2, "room again once an app took its records");
}

/// At the bound, a newer record of a machine already waiting still replaces the old
/// one; a destroyed machine's record takes its waiting record away.
#[tokio::test]
async fn waiting_records_follow_their_machine() {
    let (view, _silent, _dir) = view().await;
    for n in 0..MAX_UNPLACED {
        view.place(machine("later", &format!("l{n}")));
    }
    let mut newer = machine("later", "l0");
    newer.record.state = MachineState::Started;
    view.place(newer);
    let mut gone = machine("later", "l1");
    gone.record.state = MachineState::Destroyed;
    view.place(gone);

    view.app_arrived(AppRecord::new("later", "personal"));
    let later = view.cluster.registry.app("later").unwrap();
    let machines = later.machines();
    assert_eq!(machines.len(), MAX_UNPLACED - 1, "l1 waits no more");
    let l0 = machines.iter().find(|m| m.id == "l0").expect("l0 placed");
    assert_eq!(l0.state(), MachineState::Started, "the newer record of l0");
    assert!(machines.iter().all(|m| m.id != "l1"));
}
