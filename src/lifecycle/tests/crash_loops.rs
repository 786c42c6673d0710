//! A machine that keeps failing to start is not spawned once per request: starts are
//! held off, longer after each failure in a row, until one succeeds or the API asks.
//! After a crash of edgewake, a machine starts again only once its old run is gone.

use super::*;
use crate::lifecycle::run::{FIRST_START_BACKOFF, MAX_START_BACKOFF};

/// Exits with code 3 right after the start, before listening.
fn crashing() -> Script {
    Script {
        boot: Boot::Exit {
            after: Duration::from_millis(10),
            code: 3,
        },
        ..Script::default()
    }
}

/// The event types of the machine, newest first.
fn event_types(machine: &Machine) -> Vec<String> {
    machine
        .record()
        .events
        .iter()
        .map(|e| e.kind.clone())
        .collect()
}

fn backing_off(outcome: &Result<Ready, AcquireError>) -> Option<Duration> {
    match outcome {
        Err(AcquireError::Wake {
            error: WakeError::BackingOff(left),
            ..
        }) => Some(*left),
        _ => None,
    }
}

/// After a failed start, requests fail at once without a spawn until the back-off
/// ends; each failure in a row doubles it; the events say so.
#[tokio::test(start_paused = true)]
async fn failed_starts_back_off_exponentially() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(crashing());
    assert!(matches!(
        w.ready().await,
        Err(AcquireError::Wake {
            error: WakeError::Exited(_),
            ..
        })
    ));
    assert_eq!(w.fake.starts(&machine.id), 1);
    let left = backing_off(&w.ready().await).expect("held off");
    assert!(left <= FIRST_START_BACKOFF, "{left:?}");
    assert_eq!(w.fake.starts(&machine.id), 1, "no spawn while held off");
    assert_eq!(event_types(&machine)[0], "backoff");
    let event = machine.record().events[0].clone();
    assert_eq!(event.request.unwrap()["failed_starts"], 1);

    tokio::time::advance(FIRST_START_BACKOFF).await;
    assert!(backing_off(&w.ready().await).is_none(), "tried again");
    assert_eq!(w.fake.starts(&machine.id), 2);
    tokio::time::advance(FIRST_START_BACKOFF).await;
    let left = backing_off(&w.ready().await).expect("held off twice as long");
    assert!(left > Duration::ZERO && left <= FIRST_START_BACKOFF);
    assert_eq!(w.fake.starts(&machine.id), 2);
}

/// Requests every 10 ms for 10 s at a machine that crashes at start cost a handful
/// of spawns (one per back-off), not a thousand; the back-off never passes its cap.
#[tokio::test(start_paused = true)]
async fn crash_loop_costs_one_spawn_per_backoff() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(crashing());
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < until {
        let outcome = w.ready().await;
        assert!(outcome.is_err());
        assert!(backing_off(&outcome).is_none_or(|left| left <= MAX_START_BACKOFF));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 1 s, 2 s, 4 s of back-off: starts at about 0, 1, 3 and 7 s.
    assert_eq!(w.fake.starts(&machine.id), 4);
}

/// An API start tries at once, back-off or not; a start that succeeds ends the
/// back-off, so the next failure is held off for the first delay again.
#[tokio::test(start_paused = true)]
async fn api_start_and_success_reset_the_backoff() {
    let w = world();
    let machine = w.machine(config(None));
    w.fake.script_all(crashing());
    for _ in 0..3 {
        let _ = w.ready().await;
        tokio::time::advance(MAX_START_BACKOFF).await;
    }
    assert_eq!(w.fake.starts(&machine.id), 3);
    let _ = w.ready().await;
    assert!(backing_off(&w.ready().await).is_some());
    w.fake.script_all(Script::default());
    w.sup
        .wake(&machine, EventSource::User)
        .await
        .expect("an API start is not held off");
    assert_eq!(w.fake.starts(&machine.id), 5);
    w.fake.script_all(crashing());
    w.fake.crash(&machine.id, 1);
    wait_for_state(&machine, MachineState::Stopped).await;
    let _ = w.ready().await;
    let left = backing_off(&w.ready().await).expect("held off after the new failure");
    assert!(
        left <= FIRST_START_BACKOFF,
        "counted from the first again: {left:?}"
    );
}

/// After a crash, a `restart.policy = "always"` machine that was running waits for
/// the run the crash left behind to be gone (it dies 500 ms after being killed), then
/// starts once and comes up, instead of racing it for its address.
#[tokio::test(start_paused = true)]
async fn restart_policy_always_waits_for_the_orphan() {
    use crate::machines::store::StoredMachine;
    let w = world();
    let mut always = config(None);
    always["restart"] = json!({"policy": "always"});
    let machine = w.machine(always);
    w.fake.leave_orphan(&machine.id, Duration::from_millis(500));
    let mut record = machine.snapshot();
    record.state = MachineState::Started;
    let pid = Some(4242);
    let stored = vec![StoredMachine {
        app: machine.app.clone(),
        record,
        pid,
    }];
    w.sup.recover(stored).await;
    wait_for_state(&machine, MachineState::Started).await;
    assert_eq!(w.fake.starts(&machine.id), 1);
}

/// Waits (on paused time) until the machine is in `state`.
async fn wait_for_state(machine: &Machine, state: MachineState) {
    let mut states = machine.subscribe();
    let reached = states.wait_for(|s| *s == state);
    tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .expect("reached in time")
        .expect("the machine is there");
}
