//! The idle reaper and the idle stop's claim on a machine, on paused time.

use super::*;
use crate::lifecycle::pick::{Action, pick};
use crate::lifecycle::stop::claim_idle;
use tokio_util::sync::CancellationToken;

/// The reaper stops a machine idle for the idle timeout, and only such a machine: not
/// before the timeout, not under a request in flight (until it ends), not one whose
/// service says `autostop = false`, not one without services (the proxy never reaches
/// it).
#[tokio::test(start_paused = true)]
async fn reaper_stops_only_idle_machines_that_autostop() {
    let w = world();
    let idle = w.machine(config(None));
    let busy = w.machine(config(None));
    let mut never = config(None);
    never["services"][0]["autostop"] = json!(false);
    let kept = w.machine(never);
    let bare = w.machine(json!({"image": "fake"}));
    for machine in [&idle, &busy, &kept, &bare] {
        w.sup.wake(machine, EventSource::User).await.unwrap();
    }
    let request = busy.enter();
    let cancel = CancellationToken::new();
    let reaper = tokio::spawn(w.sup.clone().reap_idle(cancel.clone()));
    let states = || [&idle, &busy, &kept, &bare].map(|m| m.state());
    use MachineState::{Started, Stopped};

    tokio::time::sleep(IDLE / 2).await;
    assert_eq!(states(), [Started; 4], "none is idle yet");
    tokio::time::sleep(IDLE).await;
    assert_eq!(states(), [Stopped, Started, Started, Started]);
    drop(request);
    tokio::time::sleep(IDLE / 2).await;
    assert_eq!(
        states(),
        [Stopped, Started, Started, Started],
        "idle since the request"
    );
    tokio::time::sleep(IDLE).await;
    assert_eq!(states(), [Stopped, Stopped, Started, Started]);
    cancel.cancel();
    reaper.await.unwrap();
    assert_eq!(w.fake.stops(&kept.id) + w.fake.stops(&bare.id), 0);
}

/// `min_machines_running = 1` keeps one started machine of the app per region, pass
/// after pass: of two idle machines in a region one is stopped; a machine alone in its
/// region keeps running; machines that take no traffic (stopped, or cordoned) do not
/// count as the one kept.
#[tokio::test(start_paused = true)]
async fn reaper_keeps_min_machines_running_in_each_region() {
    let w = world();
    let mut keep_one = config(None);
    keep_one["services"][0]["min_machines_running"] = json!(1);
    let pair = [w.machine(keep_one.clone()), w.machine(keep_one.clone())];
    let _stopped = w.machine(keep_one.clone());
    let alone = w.machine_in("syd", keep_one.clone());
    let beside_cordoned = w.machine_in("fra", keep_one.clone());
    let cordoned = w.machine_in("fra", keep_one);
    w.sup.registry.set_cordoned(&cordoned, true);
    for machine in pair.iter().chain([&alone, &beside_cordoned, &cordoned]) {
        w.sup.wake(machine, EventSource::User).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let reaper = tokio::spawn(w.sup.clone().reap_idle(cancel.clone()));
    for _ in 0..3 {
        tokio::time::sleep(IDLE * 2).await;
        let started = pair.iter().filter(|m| m.state() == MachineState::Started);
        assert_eq!(started.count(), 1, "one of the pair");
        assert_eq!(alone.state(), MachineState::Started);
        assert_eq!(beside_cordoned.state(), MachineState::Started);
    }
    cancel.cancel();
    reaper.await.unwrap();
}

/// The idle stop's claim and a request's arrival, in both orders: a request counted in
/// (before it reads the state) keeps the machine from being claimed, and leaves it
/// `started`; once the machine is claimed, a request that arrives is not sent to it but
/// waits to wake it again. The claim marks the machine `stopping` before it reads the
/// count, even when it then gives the machine back: read first and marked after, a
/// request arriving in between (on another thread) would be sent to a machine on its
/// way down.
#[tokio::test(start_paused = true)]
async fn a_claimed_machine_gets_no_request() {
    let w = world();
    let machine = w.machine(config(None));
    drop(w.ready().await.unwrap());
    tokio::time::advance(IDLE * 2).await;
    let arriving = machine.enter();
    let mut states = machine.subscribe();
    states.mark_unchanged();
    assert!(!claim_idle(&machine, IDLE));
    assert_eq!(machine.state(), MachineState::Started);
    assert!(
        states.has_changed().unwrap(),
        "marked stopping before the count was read"
    );
    drop(arriving);

    tokio::time::advance(IDLE * 2).await;
    assert!(claim_idle(&machine, IDLE));
    let picked = pick(&w.app, 80, &w.plan(), &Default::default(), |_| false);
    assert_eq!(picked.unwrap().action, Action::Wake);
}

/// A machine idle for exactly the idle timeout is idle: the claim takes it.
#[tokio::test(start_paused = true)]
async fn idle_for_exactly_the_timeout_is_idle() {
    let w = world();
    let machine = w.machine(config(None));
    drop(w.ready().await.unwrap());
    tokio::time::advance(IDLE - Duration::from_millis(1)).await;
    assert!(!claim_idle(&machine, IDLE));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(claim_idle(&machine, IDLE));
}
