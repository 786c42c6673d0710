//! How slow a peer may be. A `Pace` bounds each wait for a peer (nginx's
//! `client_body_timeout` and `send_timeout`: the longest gap between two successful
//! reads or writes) and, with a minimum rate, the average over all the waiting (Kestrel's
//! `MinRequestBodyDataRate`): once a peer has had `timeout` of waiting in all, it must
//! have moved `min_rate` bytes per second of it. Only time spent waiting for the peer
//! counts, never time edgewake itself was busy elsewhere (a machine not reading yet).
//!
//! `PacedBody` paces a body's reads, `io::PacedIo` a connection's writes. The clock
//! costs nothing while the peer keeps up: its timer is made the first time a wait
//! begins.

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Any error, boxed (what hyper takes from bodies).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How slow a peer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The longest single wait for the peer.
    pub timeout: Duration,
    /// Bytes per second of waiting the peer must average once it has waited `timeout`
    /// in all; 0 for no minimum.
    pub min_rate: u64,
}

impl Pace {
    pub const fn timeout(timeout: Duration) -> Pace {
        Pace {
            timeout,
            min_rate: 0,
        }
    }

    /// How long the current wait may last, for a peer that has already kept edgewake
    /// waiting `waited` and moved `moved` bytes: the timeout, or less where the average
    /// rate would fall below the minimum sooner (the first `timeout` of waiting is free).
    pub fn allowance(&self, waited: Duration, moved: u64) -> Duration {
        if self.min_rate == 0 {
            return self.timeout;
        }
        let earned = Duration::from_secs_f64(moved as f64 / self.min_rate as f64);
        let total = self.timeout.max(earned);
        total.saturating_sub(waited).min(self.timeout)
    }

    /// How a peer that kept edgewake waiting `waited` in all, and moved `moved` bytes,
    /// broke this pace.
    pub fn too_slow(&self, waited: Duration, moved: u64) -> TooSlow {
        TooSlow {
            moved,
            waited,
            timeout: self.timeout,
            min_rate: self.min_rate,
        }
    }
}

/// A peer was too slow.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the peer was too slow: {moved} bytes in {waited:?} of waiting (limits: {timeout:?} per wait, {min_rate} bytes/s)"
)]
pub struct TooSlow {
    pub moved: u64,
    pub waited: Duration,
    pub timeout: Duration,
    pub min_rate: u64,
}

/// One peer's waits: how long it has kept edgewake waiting, and how much it moved.
#[derive(Debug)]
pub struct Clock {
    pace: Pace,
    waited: Duration,
    moved: u64,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    pub fn new(pace: Pace) -> Clock {
        Clock {
            pace,
            waited: Duration::ZERO,
            moved: 0,
            waiting_since: None,
            timer: None,
        }
    }

    /// The peer had nothing this time: an error once it has been too slow, else
    /// pending, with a wake-up when it will have been.
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<TooSlow> {
        let now = Instant::now();
        let deadline = *self.waiting_since.get_or_insert(now) + self.allowance();
        if now >= deadline {
            return Poll::Ready(self.too_slow(now));
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(self.too_slow(Instant::now()))
    }

    /// The peer moved `bytes`: the wait, if any, is over.
    pub fn moved(&mut self, bytes: usize) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.moved = self.moved.saturating_add(bytes as u64);
    }

    /// The peer kept up without a wait: what it did before no longer counts.
    pub fn kept_up(&mut self) {
        if self.waiting_since.is_none() {
            self.waited = Duration::ZERO;
            self.moved = 0;
        }
    }

    fn allowance(&self) -> Duration {
        self.pace.allowance(self.waited, self.moved)
    }

    fn too_slow(&self, now: Instant) -> TooSlow {
        let current = self
            .waiting_since
            .map_or(Duration::ZERO, |since| now - since);
        self.pace.too_slow(self.waited + current, self.moved)
    }
}

/// Why a paced body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    TooSlow(#[from] TooSlow),
    /// The body's own error (a malformed chunk, a peer that hung up).
    #[error("{0}")]
    Source(#[source] BoxError),
}

/// When a paced body last moved, for others to read (the wait for a machine's answer
/// counts from the client's last upload progress).
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch`.
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        // Relaxed: a reader only needs some recent value; it re-reads before it acts.
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// When the body last moved (or was made).
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A body whose sender must keep a `Pace`; one frame may be read ahead (`peek`).
pub struct PacedBody<B: Body> {
    inner: B,
    first: Option<Frame<B::Data>>,
    clock: Clock,
    /// Made only for a body that has something to send.
    progress: Option<Arc<Progress>>,
}

impl<B> PacedBody<B>
where
    B: Body + Unpin,
    B::Data: Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(inner: B, pace: Pace) -> PacedBody<B> {
        PacedBody {
            progress: (!inner.is_end_stream()).then(|| Arc::new(Progress::new())),
            inner,
            first: None,
            clock: Clock::new(pace),
        }
    }

    /// When the body last moved; `None` for a body with nothing to send.
    pub fn progress(&self) -> Option<Arc<Progress>> {
        self.progress.clone()
    }

    /// Reads the first frame ahead, so a body that is broken or too slow from its start
    /// fails here, before anything is done with it.
    pub async fn peek(&mut self) -> Result<(), BodyError> {
        if self.first.is_some() || self.inner.is_end_stream() {
            return Ok(());
        }
        match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await {
            Some(Ok(frame)) => self.first = Some(frame),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        Ok(())
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body + Unpin,
    B::Data: Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BodyError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.clock.moved(frame.data_ref().map_or(0, Buf::remaining));
                if let Some(progress) = &this.progress {
                    progress.mark();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Source(e.into())))),
            Poll::Ready(None) => {
                if let Some(progress) = &this.progress {
                    progress.mark();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.clock.poll_wait(cx) {
                Poll::Ready(too_slow) => Poll::Ready(Some(Err(too_slow.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(data) = self.first.as_ref().and_then(Frame::data_ref) {
            let ahead = data.remaining() as u64;
            hint.set_lower(hint.lower() + ahead);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + ahead);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Waker;

    const SECOND: Duration = Duration::from_secs(1);

    /// Waits on the clock until it gives up; returns how long that took.
    async fn time_to_give_up(clock: &mut Clock) -> Duration {
        let began = Instant::now();
        poll_fn(|cx| clock.poll_wait(cx)).await;
        began.elapsed()
    }

    /// Without a minimum rate, each wait may last the timeout, however many there were.
    #[tokio::test(start_paused = true)]
    async fn each_wait_may_last_the_timeout() {
        let mut clock = Clock::new(Pace::timeout(5 * SECOND));
        for _ in 0..100 {
            assert!(
                clock
                    .poll_wait(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            tokio::time::advance(4 * SECOND).await;
            clock.moved(1);
        }
        assert_eq!(time_to_give_up(&mut clock).await, 5 * SECOND);
    }

    /// A drip of one byte every 5 s keeps under a 60 s timeout, but not under a minimum
    /// rate: it is cut once its waiting passes the timeout.
    #[tokio::test(start_paused = true)]
    async fn a_drip_is_cut_by_the_minimum_rate() {
        let mut clock = Clock::new(Pace {
            timeout: 60 * SECOND,
            min_rate: 100,
        });
        let mut drips = 0;
        while clock
            .poll_wait(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            tokio::time::advance(5 * SECOND).await;
            clock.moved(1);
            drips += 1;
            assert!(drips < 100, "the drip was never cut");
        }
        assert_eq!(drips, 12, "cut after 60 s of waiting");
    }

    /// A peer that moves enough earns longer waiting, never a longer single wait.
    #[tokio::test(start_paused = true)]
    async fn moving_data_earns_waiting() {
        let mut clock = Clock::new(Pace {
            timeout: 2 * SECOND,
            min_rate: 1000,
        });
        clock.moved(10_000); // 10 s of waiting earned
        for _ in 0..5 {
            assert!(
                clock
                    .poll_wait(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            tokio::time::advance(Duration::from_millis(1999)).await;
            clock.moved(0);
        }
        // Each wait stayed under 2 s, but 9.995 s of the 10 s earned are spent.
        assert_eq!(time_to_give_up(&mut clock).await, Duration::from_millis(5));
    }

    /// A clock (1 s timeout, a rate no peer meets) whose peer made it wait 900 ms and
    /// then moved a byte.
    async fn waited_900ms() -> Clock {
        let mut clock = Clock::new(Pace {
            timeout: SECOND,
            min_rate: 1_000_000,
        });
        assert!(
            clock
                .poll_wait(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        tokio::time::advance(Duration::from_millis(900)).await;
        clock.kept_up(); // this write ended a wait: nothing is forgotten
        clock.moved(1);
        clock
    }

    /// Slowness counts across waits until the peer keeps up without one; then it is
    /// forgotten.
    #[tokio::test(start_paused = true)]
    async fn keeping_up_resets_the_account() {
        let mut still_slow = waited_900ms().await;
        assert_eq!(
            time_to_give_up(&mut still_slow).await,
            Duration::from_millis(100)
        );
        let mut caught_up = waited_900ms().await;
        caught_up.kept_up(); // a write done at once
        caught_up.moved(1);
        assert_eq!(time_to_give_up(&mut caught_up).await, SECOND);
    }
}
