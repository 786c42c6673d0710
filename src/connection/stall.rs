//! HTTP/2 answers a client does not take. hyper's HTTP/2 server (1.x,
//! `proto::h2::PipeToSendStream`) polls an answer's body for a frame, then holds that
//! frame until the client's flow-control window has room for it, and polls the body
//! again only once it is sent. So a client that grants no window
//! (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) on each of its streams leaves
//! every body unpolled after its first frame, and what it holds — a machine connection,
//! a pool slot, the machine and the connection counted in flight — held for as long as
//! it keeps the connection: no read timeout runs while a body is not polled, and a
//! connection with requests in flight is not idle. (This rests on hyper polling the
//! body before it waits for room: a body that is pending is always polled again, so a
//! frame it gives is always stamped.)
//!
//! So an answer on an HTTP/2 connection is `Watched`: it notes when it handed hyper a
//! frame (from then on the client keeps it waiting) and when it is polled again, and
//! the connection's `Answers` are swept on the tick the connection already has
//! (`serve`). An answer that has kept edgewake waiting past the client write `Pace`
//! (each wait within the send timeout, the minimum rate over all of them, as `PacedIo`
//! times an HTTP/1.1 client that stops reading) has its body and guards dropped there
//! and then, and the stream ends with that error if hyper polls it again. Time a
//! machine takes to produce the body is not the client's and is not counted (the
//! machine's read timeout bounds it).
//!
//! Nothing per answer ticks: its stamps come from a clock the sweep advances, and the
//! sweep only ever tries the lock an answer is polled under.

use super::pace::{Pace, TooSlow};
use super::serve::Guarded;
use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The answers in flight on one client connection, and the coarse clock they stamp.
pub struct Answers {
    pace: Pace,
    epoch: Instant,
    /// Milliseconds after `epoch` at the last sweep.
    now_ms: AtomicU64,
    /// Weak: an answer hyper is done with goes at once, not at the next sweep.
    watched: Mutex<Vec<Weak<dyn Stallable>>>,
}

impl Answers {
    /// Answers whose client must take them at `pace`.
    pub fn new(pace: Pace) -> Answers {
        Answers {
            pace,
            epoch: Instant::now(),
            now_ms: AtomicU64::new(0),
            watched: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        // Relaxed: a stamp a sweep old is what the clock promises anyway.
        self.now_ms.load(Ordering::Relaxed)
    }

    /// What a request of `version` is watched by: these answers on HTTP/2 (where hyper
    /// waits on the client's window); none on HTTP/1.1, whose paced writes bound a
    /// client that does not read.
    pub fn for_request(self: &Arc<Self>, version: http::Version) -> Option<Arc<Answers>> {
        (version == http::Version::HTTP_2).then(|| self.clone())
    }

    /// `body`, holding `guard`, watched until hyper is done with it. The wait for the
    /// client starts now: hyper takes a body's first frame as soon as it has the head.
    pub fn watch<B, G>(self: Arc<Self>, body: B, guard: G) -> Watched<B, G>
    where
        B: Body + Send + 'static,
        B::Error: From<TooSlow>,
        G: Send + 'static,
    {
        let end = body.is_end_stream();
        let answer = Arc::new(Answer {
            state: Mutex::new(State {
                held: Held::Answering(body, guard),
                owed_since: Some(self.now()),
                waited_ms: 0,
                moved: 0,
            }),
        });
        let weak: Weak<dyn Stallable> = Arc::downgrade(&answer) as Weak<dyn Stallable>;
        let mut watched = lock(&self.watched);
        if watched.len() == watched.capacity() {
            // Amortized: the list is pruned only when it would grow.
            watched.retain(|answer| answer.strong_count() > 0);
        }
        watched.push(weak);
        drop(watched);
        Watched {
            how: How::Watched {
                answer,
                answers: self,
                cut: B::Error::from,
                end,
            },
        }
    }

    /// Advances the clock and cuts every answer that has kept edgewake waiting past the
    /// pace; returns how many it cut. Called on the connection's tick.
    pub fn sweep(&self) -> usize {
        let now = self.epoch.elapsed().as_millis() as u64;
        let before = self.now_ms.swap(now, Ordering::Relaxed);
        // A stamp is the clock's value when it was made, up to one sweep before the
        // moment it marks: a wait counts that much less, so no answer is cut early.
        let slack = now.saturating_sub(before);
        // What the cut answers held, and every answer looked at (hyper may let go of
        // one meanwhile), are dropped after the list's lock: a body's guards take other
        // locks as they go (the machine pool's), and new streams wait on this one.
        let mut looked_at: Vec<Arc<dyn Stallable>> = Vec::new();
        let mut cut: Vec<Box<dyn Send>> = Vec::new();
        lock(&self.watched).retain(|weak| {
            let Some(answer) = weak.upgrade() else {
                return false;
            };
            let held = answer.cut_if_stalled(now, slack, &self.pace);
            looked_at.push(answer);
            match held {
                Some(held) => {
                    cut.push(held);
                    false
                }
                None => true,
            }
        });
        cut.len()
    }
}

/// One answer, as its sweep sees it.
trait Stallable: Send + Sync {
    /// Takes what the answer holds if its client has kept it waiting past `pace`, for
    /// the caller to drop.
    fn cut_if_stalled(&self, now: u64, slack: u64, pace: &Pace) -> Option<Box<dyn Send>>;
}

struct Answer<B, G> {
    state: Mutex<State<B, G>>,
}

enum Held<B, G> {
    Answering(B, G),
    /// Cut by a sweep: what it held is gone.
    Cut(TooSlow),
}

struct State<B, G> {
    held: Held<B, G>,
    /// When hyper was last handed a frame (or the head) and has not polled since.
    owed_since: Option<u64>,
    /// The client's earlier waits, and the bytes it took (for the minimum rate).
    waited_ms: u64,
    moved: u64,
}

impl<B, G> State<B, G> {
    /// hyper polls again: the client took what it was handed, and its wait is over.
    fn taken(&mut self, now: u64) {
        let Some(since) = self.owed_since.take() else {
            return;
        };
        // No reset when no tick passed: a wait shorter than the clock's tick crosses one
        // with the odds of its length, so the ticks counted add up to the time waited,
        // while forgetting the past whenever none passed would let a client that drips
        // just under a tick at a time hold an answer for ever.
        self.waited_ms = self.waited_ms.saturating_add(now.saturating_sub(since));
    }

    /// How the client was too slow over all its waits so far, if it has been: a drip of
    /// waits each shorter than the clock's tick is caught here, when it is polled, as no
    /// sweep sees any one of those waits run long.
    fn too_slow_so_far(&self, pace: &Pace) -> Option<TooSlow> {
        let waited = Duration::from_millis(self.waited_ms);
        (pace.min_rate > 0 && pace.allowance(waited, self.moved).is_zero())
            .then(|| pace.too_slow(waited, self.moved))
    }

    /// How the client was too slow, if it has been.
    fn too_slow(&self, now: u64, slack: u64, pace: &Pace) -> Option<TooSlow> {
        let since = self.owed_since?;
        let current = Duration::from_millis(now.saturating_sub(since).saturating_sub(slack));
        let waited = Duration::from_millis(self.waited_ms);
        (current > pace.allowance(waited, self.moved))
            .then(|| pace.too_slow(waited + current, self.moved))
    }

    /// Ends the answer as too slow, giving back what it held (the body and its guards:
    /// a lent machine connection is closed with it, as it is mid-answer; a pooled one
    /// goes back to its pool, which throws it away as not ready when it is next taken;
    /// the pool's slot and the in-flight counts) for the caller to drop.
    fn cut(&mut self, too_slow: TooSlow) -> Held<B, G> {
        std::mem::replace(&mut self.held, Held::Cut(too_slow))
    }
}

impl<B: Send + 'static, G: Send + 'static> Stallable for Answer<B, G> {
    fn cut_if_stalled(&self, now: u64, slack: u64, pace: &Pace) -> Option<Box<dyn Send>> {
        // Locked: hyper is polling it right now, so it is not stalled.
        let Ok(mut state) = self.state.try_lock() else {
            return None;
        };
        let too_slow = state.too_slow(now, slack, pace)?;
        Some(Box::new(state.cut(too_slow)))
    }
}

/// An answer's body and what it holds until it is done: watched by its connection's
/// `Answers` (HTTP/2), or `alone`, `Guarded` only (HTTP/1.1, where the connection's
/// paced writes bound a client that does not read).
///
/// Its `Body` impl asks nothing of `B::Error` (how a cut becomes one was fixed by
/// `watch`): a bound naming `Box<dyn Error>` there made rustc unable to prove the edge's
/// connection futures `Send` ("not general enough").
pub struct Watched<B: Body, G> {
    how: How<B, G>,
}

enum How<B: Body, G> {
    Alone(Guarded<B, G>),
    Watched {
        answer: Arc<Answer<B, G>>,
        answers: Arc<Answers>,
        /// The cut as the body's own error.
        cut: fn(TooSlow) -> B::Error,
        /// The body's own `is_end_stream`, as of its last frame (read without the lock).
        end: bool,
    },
}

impl<B: Body, G> Watched<B, G> {
    /// `body`, holding `guard`, not watched.
    pub fn alone(body: B, guard: G) -> Watched<B, G> {
        Watched {
            how: How::Alone(Guarded::new(body, guard)),
        }
    }

    /// `body`, holding `guard`, watched by the answers its request was given
    /// (`Answers::for_request`), if any.
    pub fn held(by: Option<Arc<Answers>>, body: B, guard: G) -> Watched<B, G>
    where
        B: Send + 'static,
        B::Error: From<TooSlow>,
        G: Send + 'static,
    {
        match by {
            Some(answers) => answers.watch(body, guard),
            None => Watched::alone(body, guard),
        }
    }
}

impl<B, G> Body for Watched<B, G>
where
    B: Body + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let (answer, answers, cut, end) = match &mut self.get_mut().how {
            How::Alone(body) => return Pin::new(body).poll_frame(cx),
            How::Watched {
                answer,
                answers,
                cut,
                end,
            } => (answer, answers, cut, end),
        };
        let now = answers.now();
        let mut state = lock(&answer.state);
        state.taken(now);
        if matches!(state.held, Held::Answering(..))
            && let Some(too_slow) = state.too_slow_so_far(&answers.pace)
        {
            let held = state.cut(too_slow.clone());
            drop(state);
            drop(held);
            return Poll::Ready(Some(Err(cut(too_slow))));
        }
        let body = match &mut state.held {
            Held::Answering(body, _) => body,
            Held::Cut(too_slow) => return Poll::Ready(Some(Err(cut(too_slow.clone())))),
        };
        let poll = Pin::new(&mut *body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll {
            *end = body.is_end_stream();
            let bytes = frame.data_ref().map_or(0, Buf::remaining) as u64;
            state.moved = state.moved.saturating_add(bytes);
            state.owed_since = Some(now);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.how {
            How::Alone(body) => body.is_end_stream(),
            How::Watched { end, .. } => *end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.how {
            How::Alone(body) => body.size_hint(),
            How::Watched { answer, .. } => match &lock(&answer.state).held {
                Held::Answering(body, _) => body.size_hint(),
                Held::Cut(_) => SizeHint::default(),
            },
        }
    }
}

/// A poisoned lock's data is still whole here: every change to it is one assignment.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
