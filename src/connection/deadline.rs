//! The timer of one kind of wait on a connection (the next request, the machine's
//! answer), kept for the connection's life and moved from wait to wait. A timeout made
//! per wait inserts an entry into the runtime's timer wheel and removes it again, each
//! under the driver's lock, twice per request; a kept timer moved later, as each
//! request's deadline is a little later than the last, is moved by tokio with one
//! atomic operation, and the driver files it anew when the old time comes, without
//! waking the task. Each kind of wait has its own timer, so none moves back and forth.

use std::pin::Pin;
use tokio::time::{Instant, Sleep};

/// One kind of wait's deadline on one connection.
pub struct WaitTimer {
    /// Boxed to be kept across the connection's waits.
    timer: Pin<Box<Sleep>>,
}

impl WaitTimer {
    /// No deadline yet: every wait `set`s its own before it waits (a timer awaited
    /// unset completes at once).
    pub fn unset() -> WaitTimer {
        WaitTimer {
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// The deadline of the next wait.
    pub fn set(&mut self, at: Instant) {
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
    }

    /// Completes once the deadline has passed; cancel-safe (dropping it loses nothing).
    pub async fn elapsed(&mut self) {
        self.timer.as_mut().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    /// Moved later while it is being waited for, the deadline is kept: nothing fires
    /// at the earlier time.
    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_kept() {
        let start = Instant::now();
        let mut timer = WaitTimer::unset();
        timer.set(start + S);
        assert!(tokio::time::timeout(S / 2, timer.elapsed()).await.is_err());
        timer.set(start + 3 * S);
        timer.elapsed().await;
        assert_eq!(start.elapsed(), 3 * S);
    }

    /// Moved earlier while it is being waited for, the deadline fires earlier.
    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_fires_earlier() {
        let start = Instant::now();
        let mut timer = WaitTimer::unset();
        timer.set(start + 5 * S);
        assert!(tokio::time::timeout(S, timer.elapsed()).await.is_err());
        timer.set(start + 2 * S);
        timer.elapsed().await;
        assert_eq!(start.elapsed(), 2 * S);
    }

    /// A deadline set after the timer fired unwatched is still waited for whole.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_after_an_unwatched_firing() {
        let start = Instant::now();
        let mut timer = WaitTimer::unset();
        timer.set(start + S);
        tokio::time::sleep(2 * S).await;
        timer.set(start + 4 * S);
        timer.elapsed().await;
        assert_eq!(start.elapsed(), 4 * S);
    }
}
