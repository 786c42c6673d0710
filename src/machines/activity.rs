//! The activity clock: requests in flight and when the last one finished. The reaper
//! reads it to decide that a machine is idle. A machine may also say it is busy until a
//! moment (keep-awake): the idle clock then starts at that moment, not before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Per-machine in-flight count and idle-since time. Lock-free: it sits on the hot path.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` at which the machine last became idle (or started).
    idle_since_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Restarts the idle clock (a machine that has just started is not idle yet). The
    /// clock only moves forward, so a keep-awake deadline still ahead stays.
    pub fn touch(&self) {
        self.idle_since_ms
            .fetch_max(self.now_ms(), Ordering::SeqCst);
    }

    /// Counts the machine busy for `period` from now (keep-awake); returns whether that
    /// moves its idle clock (false when an earlier keep-awake already reaches further).
    pub fn keep_awake(&self, period: Duration) -> bool {
        let until = self.now_ms().saturating_add(period.as_millis() as u64);
        self.idle_since_ms.fetch_max(until, Ordering::SeqCst) < until
    }

    /// How long the machine is still kept awake (zero when it is not).
    pub fn kept_awake_for(&self) -> Duration {
        let since = self.idle_since_ms.load(Ordering::SeqCst);
        Duration::from_millis(since.saturating_sub(self.now_ms()))
    }

    /// Starts the clock afresh at a start: a keep-awake of the previous run ends there.
    pub fn reset(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    /// How long no request has been in flight; zero while one is.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight() > 0 {
            return Duration::ZERO;
        }
        let since = self.idle_since_ms.load(Ordering::SeqCst);
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// One request (or waiter) counted as in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    /// Whether its end restarts the idle clock (not for monitors' requests).
    touches: bool,
}

impl InFlight {
    /// Counts a request in. SeqCst pairs with the reaper's state-then-count check.
    pub fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            activity: activity.clone(),
            touches: true,
        }
    }

    /// Counts a request in whose end leaves the idle clock where it was.
    pub fn enter_quietly(activity: &Arc<Activity>) -> InFlight {
        let mut in_flight = InFlight::enter(activity);
        in_flight.touches = false;
        in_flight
    }

    /// From now on, the request's end leaves the idle clock where it was.
    pub fn quiet(&mut self) {
        self.touches = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The clock moves before the count drops: a reaper that sees zero in flight
        // must also see this request's end, not an idle time from before it.
        if self.touches {
            self.activity.touch();
        }
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle time counts from the moment the last request finished, on paused time.
    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_last_request() {
        let activity = Arc::new(Activity::new());
        activity.touch();
        let first = InFlight::enter(&activity);
        let second = InFlight::enter(&activity);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            activity.idle_for(),
            Duration::ZERO,
            "busy while requests are in flight"
        );
        drop(first);
        assert_eq!(
            activity.idle_for(),
            Duration::ZERO,
            "one request still in flight"
        );
        drop(second);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(activity.idle_for(), Duration::from_secs(3));
    }

    /// A quiet request (a monitor's) leaves the idle clock running; a keep-awake starts
    /// it at its deadline, and a later request's end cannot pull it back.
    #[tokio::test(start_paused = true)]
    async fn quiet_requests_and_keep_awake() {
        let activity = Arc::new(Activity::new());
        activity.touch();
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(InFlight::enter_quietly(&activity));
        assert_eq!(activity.idle_for(), Duration::from_secs(2));
        assert!(activity.keep_awake(Duration::from_secs(5)));
        assert!(
            !activity.keep_awake(Duration::from_secs(1)),
            "reaches less far"
        );
        drop(InFlight::enter(&activity));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(activity.idle_for(), Duration::ZERO);
        assert_eq!(activity.kept_awake_for(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(activity.idle_for(), Duration::from_secs(2));
    }
}
