//! The queue for full machines: a bounded number of requests per app wait a bounded
//! time for room, give their places back, and the queue's refusals are counted.

use super::*;
use crate::metrics::AppLabels;

/// At the hard limit one request may queue (max_queued = 1): it gets the machine when
/// the request in flight ends; a second finds the queue full at once.
#[tokio::test(start_paused = true)]
async fn queue_waits_for_room_and_is_bounded() {
    let w = world();
    w.machine(config(Some(1)));
    let first = w.ready().await.unwrap();
    let queued = w.ready();
    let overflow = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = w.ready().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        refused
    };
    let (queued, refused) = tokio::join!(queued, overflow);
    assert!(queued.is_ok(), "the queued request got the machine");
    assert!(matches!(refused, Err(AcquireError::AtHardLimit { .. })));
}

/// A herd waking a machine with a hard limit of 2 gets 2 places on it, not more: the
/// others, finding it full once they count themselves in, queue (one, max_queued = 1)
/// or are refused.
#[tokio::test(start_paused = true)]
async fn a_herd_does_not_overfill_a_waking_machine() {
    let w = world();
    let machine = w.machine(config(Some(2)));
    w.fake.script_all(slow_start(Duration::from_secs(1)));
    let outcomes = w.herd(10).await;
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(served, 2, "as many as the hard limit");
    assert_eq!(machine.activity.in_flight(), 2);
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(AcquireError::AtHardLimit { .. })))
        .count();
    assert_eq!(refused, 8);
}

/// A queued request gives up at the queue timeout (within one look for room), and
/// gives its place back: the next request may queue again.
#[tokio::test(start_paused = true)]
async fn queue_times_out_and_gives_its_place_back() {
    let w = world();
    w.machine(config(Some(1)));
    let _busy = w.ready().await.unwrap();
    for _ in 0..2 {
        let began = tokio::time::Instant::now();
        let outcome = w.ready().await;
        assert!(matches!(outcome, Err(AcquireError::AtHardLimit { .. })));
        let waited = began.elapsed();
        assert!(waited >= QUEUE_TIMEOUT, "it waited in the queue");
        assert!(waited < QUEUE_TIMEOUT + acquire::QUEUE_POLL, "{waited:?}");
    }
}

/// The queue's refusals are counted for the app: a request that times out in the queue
/// is, one that leaves it with another answer (its only machine was cordoned meanwhile,
/// so there is none) is not.
#[tokio::test(start_paused = true)]
async fn only_the_queues_refusals_are_counted() {
    let w = world();
    let machine = w.machine(config(Some(1)));
    let refusals = || {
        let app = AppLabels { app: "app".into() };
        w.sup.metrics.queue_rejections.get_or_create(&app).get()
    };
    let _busy = w.ready().await.unwrap();
    let timed_out = w.ready().await;
    assert!(matches!(timed_out, Err(AcquireError::AtHardLimit { .. })));
    assert_eq!(refusals(), 1, "the timeout is counted");
    let cordon = async {
        tokio::time::sleep(QUEUE_TIMEOUT / 2).await;
        w.sup.registry.set_cordoned(&machine, true);
    };
    let (left, ()) = tokio::join!(w.ready(), cordon);
    assert!(matches!(left, Err(AcquireError::NoMachines { .. })));
    assert_eq!(refusals(), 1, "another answer is not counted");
}
