//! Wakes at the edges of a machine's life: already started, destroyed, woken by the
//! API while requests arrive, exiting by itself once started; and requests that may not
//! wake a machine at all.

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
