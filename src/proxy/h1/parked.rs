//! Machine connections the fast path parks between client connections. A client
//! connection that ends (or moves on to another machine) leaves its machine connection
//! here, and the next client connection to that machine (or HTTP/2 stream: `lent`)
//! takes it instead of opening one: a browser's or a load test's new connection then costs the machine no TCP
//! handshake and no new connection of its own. Bounded per machine; a connection
//! parked for the pool's idle time is closed by a sweeper, its budget slot with it.
//!
//! One lot per runtime that serves client connections: lot 0 for the main runtime,
//! one for each edge worker (`edge::workers`). A connection is registered with the
//! reactor of the runtime that opened it, so it is only taken again on that runtime
//! (used from another, each of its wake-ups would cross threads).

use super::machine::MachineConnection;
use crate::proxy::upstream::{self, UPSTREAM_POOL_IDLE};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::time::Instant;

/// At least this many idle connections may be parked for one machine (more when the
/// pool may hold more: `Parked::start`), shared out among the lots that serve client
/// connections (a worker's or, without workers, the main runtime's): each holds
/// `per_lot`.
pub const MIN_PARKED_PER_MACHINE: usize = 64;

type Machines = Mutex<HashMap<SocketAddr, Vec<Idle>>>;

thread_local! {
    /// The lot of the runtime this thread runs (a worker's thread sets its own).
    static LOT: Cell<usize> = const { Cell::new(0) };
}

struct Idle {
    since: Instant,
    connection: MachineConnection,
}

impl Idle {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.since) < UPSTREAM_POOL_IDLE
    }
}

/// The parked connections, by lot and machine address (a clone shares them).
#[derive(Clone)]
pub struct Parked {
    lots: Arc<Vec<Machines>>,
    /// A machine's bound in one lot: its bound over the serving lots.
    per_lot: usize,
}

impl Parked {
    /// `lots` empty lots (at least one), each machine's connections parked in them
    /// bounded by `per_machine`, and their sweeper (so it is made inside the runtime).
    pub fn start(lots: usize, per_machine: usize) -> Parked {
        let lots = lots.max(1);
        // With workers, lot 0 (the main runtime's) serves no client connection.
        let serving = if lots > 1 { lots - 1 } else { 1 };
        let per_lot = (per_machine / serving).max(1);
        let lots = Arc::new((0..lots).map(|_| Machines::default()).collect());
        tokio::spawn(sweep(Arc::downgrade(&lots)));
        Parked { lots, per_lot }
    }

    /// Connections parked by tasks on this thread go to lot `lot`, and are taken from
    /// it (an edge worker's thread, at its start).
    pub fn use_lot_on_this_thread(lot: usize) {
        LOT.with(|current| current.set(lot));
    }

    /// This thread's lot.
    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        let lot = LOT.with(Cell::get);
        // A lot past the last (none is made so) is the main runtime's; there is always one.
        let lot = if lot < self.lots.len() { lot } else { 0 };
        self.lots[lot].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A parked connection to `addr` that is still open, the most recently parked first.
    pub fn take(&self, addr: SocketAddr) -> Option<MachineConnection> {
        let now = Instant::now();
        let mut machines = self.lock();
        let parked = machines.get_mut(&addr)?;
        while let Some(idle) = parked.pop() {
            if idle.fresh(now) && idle.connection.is_open() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Parks `connection` if it is open and its machine has room; else it is closed.
    pub fn park(&self, connection: MachineConnection) {
        if !connection.is_open() {
            return;
        }
        let idle = Idle {
            since: Instant::now(),
            connection,
        };
        let mut machines = self.lock();
        let parked = machines.entry(idle.connection.addr()).or_default();
        if parked.len() < self.per_lot {
            parked.push(idle);
        }
    }

    #[cfg(test)]
    fn count(&self, addr: SocketAddr) -> usize {
        self.lock().get(&addr).map_or(0, Vec::len)
    }
}

/// Closes connections parked for the idle time, in every lot, until the lots are
/// dropped. (A worker's connection closed here, off its runtime, only leaves its
/// reactor: nothing waits on it.)
async fn sweep(lots: Weak<Vec<Machines>>) {
    upstream::sweep_idle(lots, |lots, now| {
        for machines in lots {
            let mut machines = machines.lock().unwrap_or_else(|p| p.into_inner());
            machines.retain(|_, parked| {
                parked.retain(|idle| idle.fresh(now));
                !parked.is_empty()
            });
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{MachinePolicy, Pace};
    use crate::proxy::upstream::Budget;
    use std::time::Duration;
    use tokio::net::TcpListener;

    const POLICY: MachinePolicy = MachinePolicy {
        read: Pace::timeout(Duration::from_secs(5)),
        send: Pace::timeout(Duration::from_secs(5)),
    };

    /// A listener standing in for a machine, and `n` connections to it.
    async fn machine_and_connections(
        n: usize,
        budget: &Budget,
    ) -> (TcpListener, Vec<MachineConnection>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connections = Vec::new();
        for _ in 0..n {
            let connection = MachineConnection::connect(addr, budget, POLICY);
            connections.push(connection.await.ok().unwrap());
        }
        (listener, connections)
    }

    /// A parked connection is taken by the next client; a machine's lot holds at most
    /// its bound, and what it does not hold is closed (its budget slot freed).
    #[tokio::test]
    async fn parks_up_to_the_bound_and_gives_back() {
        let budget = Budget::new(MIN_PARKED_PER_MACHINE + 2);
        let parked = Parked::start(1, MIN_PARKED_PER_MACHINE);
        let (listener, connections) =
            machine_and_connections(MIN_PARKED_PER_MACHINE + 1, &budget).await;
        let addr = listener.local_addr().unwrap();
        for connection in connections {
            parked.park(connection);
        }
        assert_eq!(parked.count(addr), MIN_PARKED_PER_MACHINE);
        assert_eq!(
            budget.available(),
            2,
            "the one not parked gave its slot back"
        );
        assert!(parked.take(addr).is_some());
        assert_eq!(parked.count(addr), MIN_PARKED_PER_MACHINE - 1);
        let elsewhere = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(parked.take(elsewhere).is_none());
    }

    /// With workers, a machine's bound is shared out among their lots: sixteen
    /// workers park at most 64 connections to one machine in all, not 64 each.
    #[tokio::test]
    async fn workers_share_the_bound() {
        let budget = Budget::new(8);
        let parked = Parked::start(17, MIN_PARKED_PER_MACHINE);
        let (listener, connections) = machine_and_connections(5, &budget).await;
        let addr = listener.local_addr().unwrap();
        for connection in connections {
            parked.park(connection);
        }
        assert_eq!(parked.count(addr), MIN_PARKED_PER_MACHINE / 16);
        assert_eq!(
            budget.available(),
            4,
            "the one over the bound gave its slot back"
        );
    }

    /// A connection parked on one runtime's thread is taken only there: a worker's
    /// thread finds the main runtime's lot empty, and the reverse.
    #[tokio::test]
    async fn each_lot_is_taken_from_on_its_own_runtime_only() {
        let budget = Budget::new(4);
        let parked = Parked::start(2, MIN_PARKED_PER_MACHINE);
        let (listener, mut connections) = machine_and_connections(1, &budget).await;
        let addr = listener.local_addr().unwrap();
        parked.park(connections.pop().unwrap());
        Parked::use_lot_on_this_thread(1);
        assert!(parked.take(addr).is_none(), "taken from another lot");
        Parked::use_lot_on_this_thread(0);
        assert_eq!(parked.count(addr), 1);
        assert!(parked.take(addr).is_some());
    }

    /// A connection the machine closed while parked is not handed out.
    #[tokio::test]
    async fn a_connection_closed_by_the_machine_is_not_taken() {
        let budget = Budget::new(4);
        let parked = Parked::start(1, MIN_PARKED_PER_MACHINE);
        let (listener, mut connections) = machine_and_connections(1, &budget).await;
        let addr = listener.local_addr().unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        parked.park(connections.pop().unwrap());
        drop(accepted);
        // The machine's FIN arrives; until then the connection still looks open.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let taken = parked.take(addr);
            match taken {
                None => break,
                Some(connection) => parked.park(connection),
            }
            assert!(
                Instant::now() < deadline,
                "the closed connection is still handed out"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.available(), 4);
    }

    /// Connections parked for the idle time are closed by the sweeper.
    #[tokio::test]
    async fn the_sweeper_closes_connections_parked_too_long() {
        let budget = Budget::new(4);
        let (listener, connections) = machine_and_connections(2, &budget).await;
        let addr = listener.local_addr().unwrap();
        // Connected on real time; the idle time passes on paused time.
        tokio::time::pause();
        let parked = Parked::start(1, MIN_PARKED_PER_MACHINE);
        for connection in connections {
            parked.park(connection);
        }
        tokio::time::sleep(UPSTREAM_POOL_IDLE * 2).await;
        assert_eq!(parked.count(addr), 0);
        assert_eq!(budget.available(), 4);
    }
}
