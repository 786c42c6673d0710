//! No machine can hold a stop, a destroy or edgewake's shutdown for longer than Fly's
//! stop timeout limit (plus the grace a kill gets).

use super::*;
use crate::config::MAX_STOP_TIMEOUT;
use crate::lifecycle::stop::{KILL_GRACE, SHUTDOWN_BOUND};
use crate::machines::tunnels::TUNNEL_CLOSE_GRACE;

/// A year: as good as for ever.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A config as stored before the API checked stop timeouts: `10000h`.
fn patient_config() -> Value {
    let mut config = config(None);
    config["stop_config"] = json!({"timeout": "10000h"});
    config
}

/// A machine that ignores its stop signal and asked for a 10000h stop timeout is
/// killed at Fly's 300 s limit, by an API stop and by a destroy alike.
#[tokio::test(start_paused = true)]
async fn stop_timeout_is_capped() {
    let w = world();
    w.fake.script_all(Script {
        stop_takes: FOREVER,
        ..Script::default()
    });
    for destroy in [false, true] {
        let machine = w.machine(patient_config());
        w.sup.wake(&machine, EventSource::User).await.unwrap();
        let began = tokio::time::Instant::now();
        if destroy {
            w.sup.destroy(&machine, EventSource::User).await;
        } else {
            w.sup
                .stop(&machine, StopRequest::new(EventSource::User))
                .await;
        }
        assert_eq!(began.elapsed(), MAX_STOP_TIMEOUT, "destroy: {destroy}");
        assert!(!w.fake.is_running(&machine.id));
    }
}

/// A machine that not even SIGKILL ends holds neither a stop nor the shutdown beyond
/// the cap and the kill's grace: the stop gives up on it and says the exit is unknown.
#[tokio::test(start_paused = true)]
async fn unkillable_machine_does_not_hold_shutdown() {
    let w = world();
    w.fake.script_all(Script {
        unkillable: true,
        ..Script::default()
    });
    let stuck = w.machine(patient_config());
    let other = w.machine(config(None));
    w.sup.wake(&stuck, EventSource::User).await.unwrap();
    w.sup.wake(&other, EventSource::User).await.unwrap();
    let began = tokio::time::Instant::now();
    w.sup
        .stop(&stuck, StopRequest::new(EventSource::User))
        .await;
    assert_eq!(began.elapsed(), MAX_STOP_TIMEOUT + KILL_GRACE);
    assert_eq!(stuck.state(), MachineState::Stopped);
    w.sup.begin_wake(&stuck, EventSource::User);
    let began = tokio::time::Instant::now();
    w.sup.shutdown().await;
    assert!(began.elapsed() <= SHUTDOWN_BOUND, "{:?}", began.elapsed());
}

/// A machine that never listens and that not even SIGKILL ends fails its wake at the
/// wake timeout, and its start gives up on it the kill's grace later (its exit
/// unknown): it holds neither the requests nor its lifecycle lock for ever.
#[tokio::test(start_paused = true)]
async fn unkillable_machine_does_not_hold_a_failed_start() {
    let w = world();
    w.fake.script_all(Script {
        boot: Boot::Hang,
        unkillable: true,
        ..Script::default()
    });
    let machine = w.machine(config(None));
    let began = tokio::time::Instant::now();
    let woken = tokio::time::timeout(FOREVER, w.ready()).await;
    let Ok(Err(AcquireError::Wake { error, .. })) = woken else {
        panic!("the wake fails, and ends");
    };
    assert!(
        matches!(error, WakeError::Timeout(t) if t == WAKE_TIMEOUT),
        "{error}"
    );
    assert_eq!(began.elapsed(), WAKE_TIMEOUT + KILL_GRACE);
    assert_eq!(machine.state(), MachineState::Stopped);
    let stop = w.sup.stop(&machine, StopRequest::new(EventSource::User));
    tokio::time::timeout(Duration::from_secs(1), stop)
        .await
        .expect("the lifecycle lock is free");
}

/// Each stop is counted in the metrics under its reason: an idle stop as `idle`, an
/// API stop as `api`, the stops of a shutdown as `shutdown`.
#[tokio::test(start_paused = true)]
async fn stops_are_counted_by_reason() {
    use crate::metrics::ReasonLabels;
    let w = world();
    let machine = w.machine(config(None));
    let stops = |reason: &str| {
        let labels = ReasonLabels {
            app: "app".into(),
            reason: reason.into(),
        };
        w.sup.metrics.stops.get_or_create(&labels).get()
    };
    drop(w.ready().await.unwrap());
    tokio::time::advance(IDLE * 2).await;
    assert!(w.sup.stop_if_idle(&machine, IDLE).await);
    w.sup.wake(&machine, EventSource::User).await.unwrap();
    let api_stop = StopRequest::new(EventSource::User);
    w.sup.stop(&machine, api_stop).await;
    w.sup.wake(&machine, EventSource::User).await.unwrap();
    w.sup.shutdown().await;
    assert_eq!([stops("idle"), stops("api"), stops("shutdown")], [1, 1, 1]);
}

/// At shutdown every running machine is stopped, its exit saying why, and no machine
/// is started afterwards.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_machine_and_starts_none() {
    let w = world();
    let machines = [w.machine(config(None)), w.machine(config(None))];
    for machine in &machines {
        w.sup.wake(machine, EventSource::User).await.unwrap();
    }
    let asleep = w.machine(config(None));
    w.sup.shutdown().await;
    for machine in &machines {
        assert_eq!(machine.state(), MachineState::Stopped);
        assert!(!w.fake.is_running(&machine.id));
        let exit = machine.record().events.first().cloned().unwrap();
        let reason = exit.request.as_ref().map(|r| r["reason"].clone());
        assert_eq!(reason, Some(json!(SHUTDOWN_REASON)), "{exit:?}");
    }
    let woken = w.sup.wake(&asleep, EventSource::User).await;
    assert!(matches!(woken, Err(WakeError::ShuttingDown)), "{woken:?}");
    assert_eq!(w.fake.starts(&asleep.id), 0);
}

/// Closing all tunnels, at the start of a shutdown, asks the open tunnels of every
/// machine to close.
#[tokio::test(start_paused = true)]
async fn every_machines_tunnels_are_asked_to_close() {
    let w = world();
    let machines = [w.machine(config(None)), w.machine(config(None))];
    let mut tunnels: Vec<_> = machines.iter().map(|m| m.tunnels.open()).collect();
    let closing = tokio::spawn({
        let sup = w.sup.clone();
        async move { sup.close_all_tunnels().await }
    });
    for tunnel in &mut tunnels {
        let asked = tokio::time::timeout(TUNNEL_CLOSE_GRACE, tunnel.closing.changed()).await;
        assert!(asked.is_ok(), "a tunnel was not asked to close");
    }
    drop(tunnels);
    closing.await.unwrap();
    assert!(machines.iter().all(|m| m.tunnels.count() == 0));
}
