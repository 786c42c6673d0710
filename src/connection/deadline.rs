//! A deadline that moves with every request but rarely touches the timer wheel: one
//! timer per connection, armed at or before the deadline and moved only when it fires
//! early (or the deadline moves earlier). A kept-alive connection's waits (the next
//! request, the machine's answer) each have a deadline a little later than the last;
//! a timer of its own per wait would be inserted into and removed from the runtime's
//! wheel twice per request, under its lock.

use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// One connection's current deadline and the timer that watches it.
pub struct LazyDeadline {
    at: Instant,
    /// Armed at or before `at`; boxed to be kept across the connection's waits.
    timer: Pin<Box<Sleep>>,
}

/// Where a deadline not yet set lies: far enough that the first `set` moves the
/// timer (before it is ever armed) instead of letting it fire for nothing.
const UNSET: Duration = Duration::from_secs(24 * 3600);

impl LazyDeadline {
    /// No deadline yet (the first wait sets it).
    pub fn unset() -> LazyDeadline {
        LazyDeadline::new(Instant::now() + UNSET)
    }

    pub fn new(at: Instant) -> LazyDeadline {
        LazyDeadline {
            at,
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// The deadline is now `at`: the timer is moved only when `at` is earlier than it.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Completes once the deadline has passed. A timer that fires early is moved to
    /// the deadline; cancel-safe (dropping it loses nothing).
    pub async fn elapsed(&mut self) {
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            self.timer.as_mut().reset(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Moved later, the deadline is kept: nothing fires at the earlier time.
    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_kept() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::new(start + S);
        deadline.set(start + 3 * S);
        deadline.elapsed().await;
        assert_eq!(start.elapsed(), 3 * S);
    }

    /// Moved earlier, the deadline fires earlier (an unset one too).
    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_fires_earlier() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::unset();
        deadline.set(start + 2 * S);
        deadline.elapsed().await;
        assert_eq!(start.elapsed(), 2 * S);
    }

    /// A deadline set after the timer fired unwatched is still waited for whole.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_after_an_unwatched_firing() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::new(start + S);
        tokio::time::sleep(2 * S).await;
        deadline.set(start + 4 * S);
        deadline.elapsed().await;
        assert_eq!(start.elapsed(), 4 * S);
    }

    /// A wait given up (another branch won) leaves the next wait exact.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_loses_nothing() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::new(start + 2 * S);
        let lost = tokio::time::timeout(S, deadline.elapsed()).await;
        assert!(lost.is_err());
        deadline.set(start + 3 * S);
        deadline.elapsed().await;
        assert_eq!(start.elapsed(), 3 * S);
    }
}
