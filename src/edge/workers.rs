//! Edge workers (`[edge] workers = N`): threads with a current-thread runtime each,
//! which serve the client connections the accept loops hand them. A current-thread
//! runtime skips the multi-thread scheduler's bookkeeping (work-stealing queues, the
//! inject queue, its per-tick statistics) on every wake-up of the hot path.
//!
//! The listening sockets and the accept loops stay on the main runtime, with the
//! connection limit; a connection is handed over as a std socket and registered again
//! with the worker's reactor. Only the connection lives there: whatever outlives a
//! request (wakes, machine processes, health checks, ACME orders) is spawned on the
//! main runtime by its owner. Workers are pinned to no CPU: the operator's taskset or
//! cgroups decide where they run.

use crate::proxy::h1::Parked;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest a worker's runtime waits for its blocking tasks at shutdown (its
/// connections are done or cut by then), and, doubled, the longest shutdown waits for
/// a worker's thread to end.
const WORKER_SHUTDOWN_BOUND: Duration = Duration::from_secs(1);

/// The edge's workers; none serves connections on the main runtime.
#[derive(Default)]
pub struct Workers {
    workers: Vec<Worker>,
    /// Where the search for the least busy worker begins, turned at each hand-off so
    /// that ties do not all go to the first.
    next: AtomicUsize,
}

struct Worker {
    runtime: Handle,
    /// Client connections it serves now.
    open: Arc<AtomicUsize>,
    /// Cleared when its thread ends, however (a panic too): a worker that is gone
    /// takes no connection, or its count, stuck at 0, would draw every one.
    alive: Arc<AtomicBool>,
    /// Ends the worker's runtime (after the edge's connections drained).
    stop: CancellationToken,
    /// Ends (dropped) when the worker's thread has shut its runtime down.
    ended: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Workers {
    /// `count` workers, each on a thread `edge-worker-<i>` of its own.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let workers = (0..count)
            .map(Worker::start)
            .collect::<std::io::Result<_>>()?;
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Serves `stream` with `serve`: on the main runtime without workers, else on the
    /// worker with the fewest open connections (connections differ too much in how
    /// long they live, a WebSocket against a single request, for turns to balance
    /// them). Tracked by `connections` either way, so shutdown waits for it. `serve`
    /// is given the connection's count on its worker, to hold as long as the
    /// connection lives (past its task, when it becomes a tunnel).
    pub fn hand_off<F, Fut>(&self, connections: &TaskTracker, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, Option<Open>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self.least_busy() else {
            connections.spawn(serve(stream, None));
            return;
        };
        // Registered again with the worker's reactor, so its I/O wakes only that thread.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return tracing::debug!("cannot hand a connection to a worker: {e}"),
        };
        let open = Open::enter(&worker.open);
        worker.runtime.spawn(connections.track_future(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream, Some(open)).await,
                Err(e) => tracing::debug!("a worker cannot take a connection: {e}"),
            }
        }));
    }

    fn least_busy(&self) -> Option<&Worker> {
        let count = self.workers.len();
        if count == 0 {
            return None;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..count)
            .map(|i| &self.workers[(first + i) % count])
            .filter(|worker| worker.alive.load(Ordering::Relaxed))
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
    }

    /// Shuts every worker's runtime down (a connection still open is cut) and waits
    /// for its thread, at most `WORKER_SHUTDOWN_BOUND` twice over for all of them.
    /// Call after the edge's connections have drained.
    pub async fn shut_down(&self) {
        for worker in &self.workers {
            worker.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + 2 * WORKER_SHUTDOWN_BOUND;
        for (index, worker) in self.workers.iter().enumerate() {
            let ended = worker
                .ended
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let Some(ended) = ended else { continue };
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!("edge-worker-{index} did not end within its bound; left behind");
            }
        }
    }
}

impl Drop for Worker {
    /// A worker never shut down (a start that failed later, or a failed start of a
    /// later worker) ends on its own.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Worker {
    fn start(index: usize) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let stopped = stop.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let living = Alive(alive.clone());
        std::thread::Builder::new()
            .name(format!("edge-worker-{index}"))
            .spawn(move || {
                let _ended = ended_tx;
                let _living = living;
                // Its fast-path connections to machines are parked where only it
                // takes them (lot 0 is the main runtime's).
                Parked::use_lot_on_this_thread(index + 1);
                runtime.block_on(stopped.cancelled());
                runtime.shutdown_timeout(WORKER_SHUTDOWN_BOUND);
            })?;
        Ok(Worker {
            runtime: handle,
            open: Arc::new(AtomicUsize::new(0)),
            alive,
            stop,
            ended: std::sync::Mutex::new(Some(ended)),
        })
    }
}

/// Held by a worker's thread: marks the worker gone when the thread ends.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Counts a connection open on a worker while it lives.
pub struct Open(Arc<AtomicUsize>);

impl Open {
    fn enter(open: &Arc<AtomicUsize>) -> Open {
        open.fetch_add(1, Ordering::Relaxed);
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's count on its worker lasts as long as whatever holds it (a tunnel
    /// the connection became), not as long as the task it was handed to.
    #[tokio::test]
    async fn a_connection_counts_while_its_slot_is_held() {
        let workers = Workers::start(1).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let connections = TaskTracker::new();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        workers.hand_off(&connections, stream, move |_stream, open| async move {
            let _ = held_tx.send(open);
        });
        let open = held.await.unwrap().expect("counted on the worker");
        connections.close();
        connections.wait().await;
        let count = || workers.workers[0].open.load(Ordering::Relaxed);
        assert_eq!(count(), 1, "the task is done, the slot is still held");
        drop(open);
        assert_eq!(count(), 0);
        workers.shut_down().await;
    }

    /// A worker whose thread has ended gets no more connections: the others do, or,
    /// with none left, the main runtime.
    #[test]
    fn a_worker_that_is_gone_takes_no_connection() {
        let workers = Workers::start(2).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let end = |worker: &Worker| {
            worker.stop.cancel();
            while worker.alive.load(Ordering::Relaxed) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the worker did not end"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        end(&workers.workers[0]);
        for _ in 0..4 {
            let chosen = workers.least_busy().expect("the other worker");
            assert!(std::ptr::eq(chosen, &workers.workers[1]));
        }
        end(&workers.workers[1]);
        assert!(workers.least_busy().is_none(), "the main runtime serves");
    }
}
