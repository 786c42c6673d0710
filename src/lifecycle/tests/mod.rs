//! The lifecycle's guarantees on paused time with the fake driver: one start for a herd
//! (even when it fails), no idle stop under a request, fast failure when a machine dies
//! while starting, updates ordered with wakes. `picking`: which machine a plan picks;
//! `idle`: the reaper; `queueing`: the bounded queue for full machines, which gives its
//! places back and counts its refusals; `waking`: wakes at the edges of a machine's
//! life; `bounds`: stops and shutdown that end; `crash_loops`: back-off after failed
//! starts, and recovery that waits for a crashed edgewake's orphans.

mod bounds;
mod crash_loops;
mod idle;
mod picking;
mod queueing;
mod waking;

use super::*;
use crate::drivers::fake::{Boot, FakeDriver, Script};
use crate::drivers::{DriverError, Exit};
use crate::machines::registry::NewMachine;
use crate::machines::spec::MachineSpec;
use crate::machines::store::Store;
use crate::machines::{MachineState, Registry};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAKE_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(4);

struct World {
    sup: Arc<Supervisor>,
    fake: Arc<FakeDriver>,
    app: Arc<App>,
    _dir: tempfile::TempDir,
}

fn settings() -> Settings {
    Settings {
        idle_timeout: IDLE,
        reap_interval: Duration::from_millis(250),
        wake_timeout: WAKE_TIMEOUT,
        probe_interval: Duration::from_millis(5),
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(5),
        queue_timeout: QUEUE_TIMEOUT,
        max_queued: 1,
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let (registry, _) = Registry::load(store, "127.77.0.0/24".parse().unwrap()).unwrap();
    registry.create_app("app", "personal").unwrap();
    let fake = Arc::new(FakeDriver::new());
    let sup = Arc::new(Supervisor::new(
        Arc::new(registry),
        fake.clone(),
        settings(),
    ));
    let app = sup.registry.app("app").unwrap();
    World {
        sup,
        fake,
        app,
        _dir: dir,
    }
}

fn config(hard_limit: Option<usize>) -> Value {
    json!({
        "image": "fake",
        "services": [{
            "internal_port": 8080,
            "ports": [{"port": 80, "handlers": ["http"]}],
            "concurrency": {"hard_limit": hard_limit},
        }],
    })
}

impl World {
    fn machine(&self, config: Value) -> Arc<Machine> {
        self.machine_in("ams", config)
    }

    fn machine_in(&self, region: &str, config: Value) -> Arc<Machine> {
        let new = NewMachine {
            name: None,
            region: region.into(),
            spec: MachineSpec::from_config(&config).unwrap(),
            config,
            cordoned: false,
        };
        self.sup.registry.create_machine(&self.app, new).unwrap()
    }

    fn plan(&self) -> Plan {
        Plan {
            regions: vec!["ams".to_string()].into(),
            others_allowed: true,
            pinned: Pinned::Any,
            avoid: Vec::new(),
        }
    }

    /// A request's way in: a ready machine, counted in flight.
    async fn ready(&self) -> Result<Ready, AcquireError> {
        self.sup.ready(&self.app, 80, &self.plan()).await
    }

    /// `n` requests arriving together.
    async fn herd(&self, n: usize) -> Vec<Result<Ready, AcquireError>> {
        let requests = (0..n).map(|_| self.ready());
        futures_util::future::join_all(requests).await
    }

    /// Begins an idle stop of `machine` (idle for twice the timeout by then) and returns
    /// once it is under way (`stopping`): a `slow_stop` one. The task says whether the
    /// machine was stopped.
    async fn idle_stop_under_way(&self, machine: &Arc<Machine>) -> tokio::task::JoinHandle<bool> {
        tokio::time::advance(IDLE * 2).await;
        let sup = self.sup.clone();
        let reaped = machine.clone();
        let stop = tokio::spawn(async move { sup.stop_if_idle(&reaped, IDLE).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(machine.state(), MachineState::Stopping);
        stop
    }
}

fn slow_start(start_takes: Duration) -> Script {
    Script {
        start_takes,
        ..Script::default()
    }
}

/// Machines that take a second to exit after their stop signal.
fn slow_stop() -> Script {
    Script {
        stop_takes: Duration::from_secs(1),
        ..Script::default()
    }
}

/// A herd of requests to a stopped machine shares one start and all get the machine.
#[tokio::test(start_paused = true)]
async fn herd_shares_one_start() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(slow_start(Duration::from_secs(1)));
    let outcomes = w.herd(50).await;
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(w.fake.starts(&machine.id), 1);
    assert_eq!(machine.state(), MachineState::Started);
}

/// A herd whose machine fails to start gets that one failure: the failed start is not
/// tried again by every request that joined it.
#[tokio::test(start_paused = true)]
async fn herd_shares_one_failed_start() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(Script {
        start_takes: Duration::from_secs(1),
        fail: Some(|| DriverError::UnknownImage("nothing/here".into())),
        ..Script::default()
    });
    let outcomes = w.herd(20).await;
    let mut failures = Vec::new();
    for outcome in outcomes {
        let Err(AcquireError::Wake {
            error: WakeError::StartFailed(failure),
            ..
        }) = outcome
        else {
            panic!("every request sees the failed start");
        };
        assert!(
            matches!(*failure, DriverError::UnknownImage(_)),
            "{failure}"
        );
        failures.push(failure);
    }
    assert!(
        failures.iter().all(|f| Arc::ptr_eq(f, &failures[0])),
        "the driver's one error is shared, not one per request"
    );
    assert_eq!(w.fake.starts(&machine.id), 1);
    assert_eq!(machine.state(), MachineState::Stopped);
}

/// A herd whose machine dies while booting gets the exit, once, long before the wake
/// timeout.
#[tokio::test(start_paused = true)]
async fn crash_while_starting_fails_the_herd_fast() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(Script {
        boot: Boot::Exit {
            after: Duration::from_millis(300),
            code: 3,
        },
        ..Script::default()
    });
    let began = tokio::time::Instant::now();
    let outcomes = w.herd(20).await;
    assert!(began.elapsed() < Duration::from_secs(1));
    for outcome in outcomes {
        let Err(AcquireError::Wake { error, .. }) = outcome else {
            panic!("every request sees the exit");
        };
        assert!(
            matches!(error, WakeError::Exited(Exit { code: Some(3), .. })),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "the machine exited while starting (exit code 3)"
        );
    }
    assert_eq!(w.fake.starts(&machine.id), 1);
    assert_eq!(machine.state(), MachineState::Stopped);
}

/// A machine that never listens fails its wake at the wake timeout, and is killed.
#[tokio::test(start_paused = true)]
async fn hanging_machine_times_out() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(Script {
        boot: Boot::Hang,
        ..Script::default()
    });
    let Err(AcquireError::Wake { error, .. }) = w.ready().await else {
        panic!("the wake fails");
    };
    assert!(
        matches!(error, WakeError::Timeout(t) if t == WAKE_TIMEOUT),
        "{error}"
    );
    assert!(!w.fake.is_running(&machine.id));
    assert_eq!(machine.state(), MachineState::Stopped);
}

/// The reaper never stops a machine with a request in flight, however long it has been
/// since the last one ended.
#[tokio::test(start_paused = true)]
async fn idle_stop_spares_a_request_in_flight() {
    let w = world();
    let machine = w.machine(config(None));
    drop(w.ready().await.unwrap());
    tokio::time::advance(IDLE * 2).await;
    let request = machine.enter();
    assert!(!w.sup.stop_if_idle(&machine, IDLE).await);
    assert_eq!(machine.state(), MachineState::Started);
    drop(request);
    tokio::time::advance(IDLE * 2).await;
    assert!(w.sup.stop_if_idle(&machine, IDLE).await);
    assert_eq!(machine.state(), MachineState::Stopped);
    assert_eq!(w.fake.stops(&machine.id), 1);
}

/// A request arriving while an idle stop is under way waits it out and wakes the
/// machine again, instead of being sent to a machine on its way down.
#[tokio::test(start_paused = true)]
async fn request_during_idle_stop_wakes_the_machine_again() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(slow_stop());
    drop(w.ready().await.unwrap());
    let stop = w.idle_stop_under_way(&machine).await;
    let ready = w.ready().await.expect("the request is served");
    assert!(stop.await.unwrap(), "the idle stop went through");
    assert_eq!(ready.machine.state(), MachineState::Started);
    assert_eq!(w.fake.starts(&machine.id), 2);
}

/// An update that arrives during a wake waits for it, then stops the machine and
/// applies the new config; the request that began the wake, finding the machine
/// stopped again, wakes it with the new config. Nothing interleaves.
#[tokio::test(start_paused = true)]
async fn update_during_a_wake_waits_for_it() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(slow_start(Duration::from_secs(1)));
    let old_version = machine.record().instance_id.clone();
    let request = w.ready();
    let update = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let new_config = config(Some(5));
        let update = Update {
            spec: MachineSpec::from_config(&new_config).unwrap(),
            config: new_config,
            expected_version: None,
            skip_launch: true,
            cordoned: None,
        };
        w.sup.update(&machine, update).await
    };
    let (ready, updated) = tokio::join!(request, update);
    assert!(updated.is_ok());
    assert_eq!(ready.unwrap().machine.id, machine.id);
    assert_eq!(machine.state(), MachineState::Started);
    assert_ne!(machine.record().instance_id, old_version);
    assert_eq!(machine.spec().services[0].concurrency.hard_limit, Some(5));
    let mut events: Vec<(String, String)> = machine
        .record()
        .events
        .iter()
        .map(|e| (e.kind.clone(), e.status.clone()))
        .collect();
    events.reverse();
    let expected = [
        ("launch", "created"),
        ("start", "started"),
        ("update", "stopping"),
        ("exit", "stopped"),
        ("update", "stopped"),
        ("start", "started"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    assert_eq!(events, expected);
}

/// A machine the request could not reach is avoided: the request is placed on another.
#[tokio::test(start_paused = true)]
async fn avoided_machines_are_not_picked() {
    let w = world();
    let first = w.machine(config(None));
    let second = w.machine(config(None));
    let mut plan = w.plan();
    plan.avoid.push(first.id.clone());
    let ready = w.sup.ready(&w.app, 80, &plan).await.unwrap();
    assert_eq!(ready.machine.id, second.id);
}

/// A stopped machine hosted by another node: the request gets it without a start here
/// (its node wakes it), and nothing of it reaches this node's state database; when
/// that node is down, the request goes to a local machine instead.
#[tokio::test(start_paused = true)]
async fn remote_machines_are_sent_to_not_woken() {
    let w = world();
    let local = w.machine(config(None));
    let mut record = local.snapshot();
    record.id = "00000000000abc".into();
    record.state = MachineState::Stopped;
    record.region = "syd".into();
    let node = w.sup.registry.node("syd-1");
    node.set_up(true); // its heartbeat was heard
    w.sup.registry.learn_machine("app", record, &node).unwrap();
    let plan = Plan {
        regions: vec!["syd".to_string(), "ams".to_string()].into(),
        ..w.plan()
    };
    let ready = w.sup.ready(&w.app, 80, &plan).await.unwrap();
    assert_eq!(ready.machine.id, "00000000000abc");
    assert!(!ready.machine.is_local());
    assert_eq!(w.fake.starts("00000000000abc"), 0);
    assert_eq!(w.sup.registry.local_machines().len(), 1);
    drop(ready);

    node.set_up(false);
    let ready = w.sup.ready(&w.app, 80, &plan).await.unwrap();
    assert_eq!(
        ready.machine.id, local.id,
        "the down node's machine is skipped"
    );
}

/// The reaper reads its timings at every round: an idle timeout shortened while it runs
/// (a reload) stops a machine the old one would have kept.
#[tokio::test(start_paused = true)]
async fn reaper_takes_a_new_idle_timeout() {
    let w = world();
    let machine = w.machine(config(None));
    drop(w.ready().await.unwrap());
    let cancel = CancellationToken::new();
    let reaper = tokio::spawn(w.sup.clone().reap_idle(cancel.clone()));
    tokio::time::sleep(IDLE / 2).await;
    assert_eq!(machine.state(), MachineState::Started);
    w.sup.set_settings(Settings {
        idle_timeout: IDLE / 4,
        ..settings()
    });
    // Under the old timeout the machine has 2 s left: it must stop within 1.5 s.
    for _ in 0..30 {
        if machine.state() == MachineState::Stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(machine.state(), MachineState::Stopped);
    assert_eq!(w.fake.stops(&machine.id), 1);
    cancel.cancel();
    reaper.await.unwrap();
}
