use super::*;
use crate::connection::BoxError;
use bytes::Bytes;
use std::task::Waker;

const SECOND: Duration = Duration::from_secs(1);
/// The connection's tick in these tests.
const TICK: Duration = Duration::from_millis(250);

/// A machine's answer: a frame of that many bytes each poll, without end; or, with
/// none, nothing yet.
struct Machine(Option<usize>);

impl Body for Machine {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.0 {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; bytes]))))),
            None => Poll::Pending,
        }
    }
}

/// What an answer holds (a machine connection, a slot): gone once the answer is cut.
type Guard = Arc<()>;

fn answers(pace: Pace) -> Arc<Answers> {
    Arc::new(Answers::new(pace))
}

/// Polls as hyper does when the client has room for one more frame.
fn take<B>(body: &mut Watched<B, Guard>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
}

/// Lets `time` pass on the connection's tick, sweeping at each; how many were cut.
async fn ticks(answers: &Answers, time: Duration) -> usize {
    let mut cut = 0;
    for _ in 0..time.div_duration_f64(TICK).round() as u32 {
        tokio::time::advance(TICK).await;
        cut += answers.sweep();
    }
    cut
}

/// An answer whose client takes nothing after its first frame is cut once the send
/// timeout has passed (within two ticks), what it held is let go at once, and its next
/// poll is an error, not an end.
#[tokio::test(start_paused = true)]
async fn an_answer_not_taken_is_cut_after_the_timeout() {
    let answers = answers(Pace::timeout(2 * SECOND));
    let guard = Guard::default();
    let mut body = answers.clone().watch(Machine(Some(10)), guard.clone());
    assert!(matches!(take(&mut body), Poll::Ready(Some(Ok(_)))));
    assert_eq!(ticks(&answers, 2 * SECOND).await, 0, "cut early");
    assert_eq!(ticks(&answers, 2 * TICK).await, 1);
    assert_eq!(Arc::strong_count(&guard), 1, "the guard was let go");
    let cut = take(&mut body);
    assert!(matches!(&cut, Poll::Ready(Some(Err(e))) if e.is::<TooSlow>()));
}

/// An answer hyper never polls at all is cut the same way.
#[tokio::test(start_paused = true)]
async fn an_answer_never_polled_is_cut() {
    let answers = answers(Pace::timeout(SECOND));
    let guard = Guard::default();
    let _body = answers.clone().watch(Machine(Some(10)), guard.clone());
    assert_eq!(ticks(&answers, SECOND + 2 * TICK).await, 1);
    assert_eq!(Arc::strong_count(&guard), 1);
}

/// A client that takes a frame every 90% of the timeout is never cut, however long the
/// answer lasts.
#[tokio::test(start_paused = true)]
async fn a_slow_client_that_keeps_taking_is_not_cut() {
    let answers = answers(Pace {
        timeout: 4 * SECOND,
        min_rate: 256,
    });
    let mut body = answers
        .clone()
        .watch(Machine(Some(16 * 1024)), Guard::default());
    for _ in 0..50 {
        assert!(matches!(take(&mut body), Poll::Ready(Some(Ok(_)))));
        assert_eq!(ticks(&answers, 3 * SECOND).await, 0);
    }
}

/// Time the machine takes to answer is not the client's: an answer waiting on its
/// machine is not cut.
#[tokio::test(start_paused = true)]
async fn a_machine_slow_to_answer_is_not_the_clients_wait() {
    let answers = answers(Pace::timeout(SECOND));
    let mut body = answers.clone().watch(Machine(None), Guard::default());
    assert!(take(&mut body).is_pending());
    assert_eq!(ticks(&answers, 10 * SECOND).await, 0);
}

/// A client that drips (takes a 10-byte frame just inside each timeout) is cut by the
/// minimum rate once its waiting passes a timeout's worth.
#[tokio::test(start_paused = true)]
async fn a_drip_is_cut_by_the_minimum_rate() {
    let answers = answers(Pace {
        timeout: 2 * SECOND,
        min_rate: 256,
    });
    let mut body = answers.clone().watch(Machine(Some(10)), Guard::default());
    let mut drips = 0;
    while let Poll::Ready(Some(Ok(_))) = take(&mut body) {
        drips += 1;
        assert!(drips < 10, "the drip was never cut");
        ticks(&answers, Duration::from_millis(1750)).await;
    }
    assert!(drips <= 3, "cut after {drips} drips");
}

/// Lets `time` pass and sweeps for each tick passed since the last sweep (a client's
/// wait shorter than a tick crosses one sweep or none); how many were cut.
async fn wait_between_sweeps(
    answers: &Answers,
    since_sweep: &mut Duration,
    time: Duration,
) -> usize {
    tokio::time::advance(time).await;
    *since_sweep += time;
    let mut cut = 0;
    while *since_sweep >= TICK {
        *since_sweep -= TICK;
        cut += answers.sweep();
    }
    cut
}

/// A client that drips faster than the tick (a 10-byte frame every half tick, far under
/// the minimum rate) is cut all the same once its waiting passes a timeout's worth: a
/// wait that crosses no sweep does not wipe out the ones before it.
#[tokio::test(start_paused = true)]
async fn a_drip_faster_than_the_tick_is_cut() {
    let answers = answers(Pace {
        timeout: 2 * SECOND,
        min_rate: 256,
    });
    let guard = Guard::default();
    let mut body = answers.clone().watch(Machine(Some(10)), guard.clone());
    let mut since_sweep = Duration::ZERO;
    let mut drips = 0;
    let cut = loop {
        match take(&mut body) {
            Poll::Ready(Some(Ok(_))) => drips += 1,
            other => break other,
        }
        assert!(drips < 200, "the drip was never cut");
        wait_between_sweeps(&answers, &mut since_sweep, TICK / 2).await;
    };
    assert!(matches!(&cut, Poll::Ready(Some(Err(e))) if e.is::<TooSlow>()));
    // 2 s of waiting at 125 ms a drip, give or take a tick.
    assert!((14..=20).contains(&drips), "cut after {drips} drips");
    assert_eq!(Arc::strong_count(&guard), 1, "the guard was let go");
}

/// The list of answers keeps only those hyper still holds.
#[tokio::test(start_paused = true)]
async fn answers_done_leave_the_list() {
    let answers = answers(Pace::timeout(SECOND));
    for _ in 0..1000 {
        drop(answers.clone().watch(Machine(Some(1)), Guard::default()));
    }
    let _held = answers.clone().watch(Machine(Some(1)), Guard::default());
    assert!(lock(&answers.watched).len() <= 4);
    answers.sweep();
    assert_eq!(lock(&answers.watched).len(), 1);
}
