//! Wakes at the edges of a machine's life: already started, destroyed, woken by the
//! API while requests arrive, exiting by itself once started; requests that may not
//! wake a machine at all, or must not wait for it; early wakes; how wakes are counted.

use super::*;

/// Waking a started machine starts nothing more: the running instance serves.
#[tokio::test(start_paused = true)]
async fn waking_a_started_machine_starts_nothing() {
    let w = world();
    let machine = w.machine(config(None));
    for _ in 0..2 {
        w.sup.wake(&machine, EventSource::User).await.unwrap();
    }
    assert_eq!(w.fake.starts(&machine.id), 1);
}

/// A destroyed machine is not woken again (`Gone`), and leaves no lifecycle state
/// behind.
#[tokio::test(start_paused = true)]
async fn a_destroyed_machine_is_not_woken() {
    let w = world();
    let machine = w.machine(config(None));
    w.sup.wake(&machine, EventSource::User).await.unwrap();
    w.sup.destroy(&machine, EventSource::User).await;
    assert_eq!(w.sup.runs.tracked(), 0, "its run is forgotten");
    let woken = w.sup.wake(&machine, EventSource::User).await;
    assert!(matches!(woken, Err(WakeError::Gone)), "{woken:?}");
    assert_eq!(w.fake.starts(&machine.id), 1);
    assert!(!w.fake.is_running(&machine.id));
}

/// A request arriving right after the API began a wake, before the machine's state
/// says so, joins that wake instead of waking another machine.
#[tokio::test(start_paused = true)]
async fn a_request_joins_a_wake_the_api_began() {
    let w = world();
    let first = w.machine(config(None));
    let second = w.machine(config(None));
    w.sup.begin_wake(&second, EventSource::User);
    assert_eq!(
        second.state(),
        MachineState::Created,
        "the start has not run yet"
    );
    let ready = w.ready().await.unwrap();
    assert_eq!(ready.machine.id, second.id);
    assert_eq!(w.fake.starts(&first.id), 0);
}

/// A machine whose service says `autostart = false` is never woken by a request: the
/// request is refused at once.
#[tokio::test(start_paused = true)]
async fn autostart_off_is_never_woken_by_a_request() {
    let w = world();
    let mut off = config(None);
    off["services"][0]["autostart"] = json!(false);
    let machine = w.machine(off);
    let refused = w.ready().await;
    assert!(matches!(refused, Err(AcquireError::NoMachines { .. })));
    assert_eq!(w.fake.starts(&machine.id), 0);
}

/// A started machine whose process exits by itself is marked stopped, with the exit in
/// its events, and the next request wakes it again.
#[tokio::test(start_paused = true)]
async fn a_machine_that_exits_is_stopped_and_woken_again() {
    let w = world();
    let machine = w.machine(config(None));
    drop(w.ready().await.unwrap());
    w.fake.crash(&machine.id, 7);
    let mut states = machine.subscribe();
    let stopped = tokio::time::timeout(
        WAKE_TIMEOUT,
        states.wait_for(|s| *s == MachineState::Stopped),
    );
    assert!(stopped.await.is_ok(), "the exit was not noticed");
    let exit = machine.record().events.first().cloned().unwrap();
    assert_eq!(
        (exit.kind.as_str(), exit.status.as_str()),
        ("exit", "stopped")
    );
    drop(w.ready().await.unwrap());
    assert_eq!(w.fake.starts(&machine.id), 2);
}

/// Deleting an app (out of the registry first, as the API does) stops and destroys
/// every machine it has, running or not: nothing is left running, nor any lifecycle
/// state.
#[tokio::test(start_paused = true)]
async fn destroying_an_app_destroys_its_machines() {
    let w = world();
    let running = w.machine(config(None));
    let stopped = w.machine(config(None));
    w.sup.wake(&running, EventSource::User).await.unwrap();
    let app = w.sup.registry.remove_app("app").unwrap();
    w.sup.destroy_app(app).await;
    for machine in [&running, &stopped] {
        assert_eq!(machine.state(), MachineState::Destroyed);
    }
    assert!(!w.fake.is_running(&running.id));
    assert_eq!(w.sup.runs.tracked(), 0);
}

/// A request that must not wait for a sleeping machine is answered `Asleep` at once: a
/// no-wake request (`Leave`) leaves the machine asleep, the wake page's request (`Begin`)
/// begins its wake; once the machine is started, both are served.
#[tokio::test(start_paused = true)]
async fn requests_that_do_not_wait_for_a_wake() {
    let w = world();
    let machine = w.machine(config(None));
    let plan = w.plan();
    let ready = |on_sleep| {
        let manner = Manner {
            on_sleep,
            quiet: false,
        };
        w.sup.ready_in(&w.app, 80, &plan, manner)
    };
    let left = ready(OnSleep::Leave).await;
    assert!(matches!(
        left,
        Err(AcquireError::Asleep { waking: false, .. })
    ));
    tokio::time::sleep(WAKE_TIMEOUT).await;
    assert_eq!(w.fake.starts(&machine.id), 0, "a no-wake request woke it");
    let begun = ready(OnSleep::Begin).await;
    assert!(matches!(
        begun,
        Err(AcquireError::Asleep { waking: true, .. })
    ));
    assert!(
        started_within(&machine, WAKE_TIMEOUT).await,
        "no wake began"
    );
    for on_sleep in [OnSleep::Leave, OnSleep::Begin] {
        assert!(ready(on_sleep).await.is_ok());
    }
    assert_eq!(w.fake.starts(&machine.id), 1);
}

/// An early wake (the TLS ClientHello named the app) begins the wake a request would
/// begin; a machine being stopped it leaves to stop (a request that comes wakes it).
#[tokio::test(start_paused = true)]
async fn an_early_wake_begins_only_the_wake_of_a_sleeping_machine() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(slow_stop());
    w.sup.wake_early(&w.app, 80, &w.plan());
    assert!(
        started_within(&machine, WAKE_TIMEOUT).await,
        "no wake began"
    );
    let stop = w.idle_stop_under_way(&machine).await;
    w.sup.wake_early(&w.app, 80, &w.plan());
    assert!(stop.await.unwrap(), "the idle stop went through");
    tokio::time::sleep(WAKE_TIMEOUT).await;
    assert_eq!(machine.state(), MachineState::Stopped);
    assert_eq!(w.fake.starts(&machine.id), 1);
}

/// Wakes are counted by why they were made (`request`, `api`), failed ones by how they
/// failed, and the driver's failures by operation: a missing image is a failed pull.
#[tokio::test(start_paused = true)]
async fn wakes_are_counted_by_reason_and_failure() {
    use crate::images::ImageError;
    use crate::metrics::{OperationLabels, ReasonLabels};
    let w = world();
    w.machine(config(None));
    drop(w.ready().await.unwrap()); // woken by the request
    let by_api = w.machine(config(None));
    w.sup.wake(&by_api, EventSource::User).await.unwrap();
    let no_image = w.machine(config(None));
    w.fake.script(
        &no_image.id,
        Script {
            fail: Some(|| DriverError::ImageNotFound(ImageError::NotFound("none".into()))),
            ..Script::default()
        },
    );
    let refused = w.machine(config(None));
    w.fake.script(
        &refused.id,
        Script {
            fail: Some(|| DriverError::UnknownImage("none".into())),
            ..Script::default()
        },
    );
    for machine in [&no_image, &refused] {
        assert!(w.sup.wake(machine, EventSource::User).await.is_err());
    }
    let metrics = &w.sup.metrics;
    let labels = |reason: &str| ReasonLabels {
        app: "app".into(),
        reason: reason.into(),
    };
    let wakes = |reason| metrics.wakes.get_or_create(&labels(reason)).get();
    assert_eq!([wakes("request"), wakes("api")], [1, 1]);
    let failures = metrics
        .wake_failures
        .get_or_create(&labels("start_failed"))
        .get();
    assert_eq!(failures, 2);
    let driver_errors = |operation: &str| {
        let labels = OperationLabels {
            operation: operation.into(),
        };
        metrics.driver_errors.get_or_create(&labels).get()
    };
    assert_eq!([driver_errors("pull"), driver_errors("start")], [1, 1]);
}

/// Whether the machine is started within `limit` (polled on its state changes).
async fn started_within(machine: &Machine, limit: Duration) -> bool {
    let mut states = machine.subscribe();
    let started = states.wait_for(|s| *s == MachineState::Started);
    tokio::time::timeout(limit, started).await.is_ok()
}
