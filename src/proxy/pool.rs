//! The bounded pool of connections to machines, for requests that cannot use their
//! client connection's own upstream: HTTP/2 clients' streams with a body, h2c backends.
//! (A bodiless stream only takes a slot here, and borrows a fast-path connection:
//! `h1::lent`.)
//!
//! Per machine, at most `max_per_machine` requests are in flight over the pool; more
//! wait up to the queue timeout for a slot, then give up unsent. An HTTP/1.1 connection
//! is opened only when none is idle, so a machine never has more pooled connections
//! than slots (every connection is a request's, or idle after one); h2c backends
//! share one connection. Idle connections close after `UPSTREAM_POOL_IDLE`.

use super::upstream::{self, Budget, MachineBody, SendFailure, UPSTREAM_POOL_IDLE, UpstreamError};
use crate::connection::{Pace, UpstreamLimits};
use dashmap::DashMap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

type Machines = DashMap<SocketAddr, Arc<MachinePool>>;

/// Pooled connections to every machine.
pub struct Pools {
    machines: Arc<Machines>,
    budget: Budget,
    max_per_machine: usize,
}

/// How one request uses the pool (from the settings in force when it came): how long it
/// waits for a slot, how writes to the machine are paced.
#[derive(Debug, Clone, Copy)]
pub struct Queueing {
    pub timeout: Duration,
    pub send: Pace,
}

/// One machine's pooled connections.
struct MachinePool {
    /// Requests in flight over the pool.
    slots: Arc<Semaphore>,
    max: usize,
    idle: Mutex<Vec<Idle>>,
    /// The h2c connection, and when a request last took it.
    h2: tokio::sync::Mutex<Option<(http2::SendRequest<MachineBody>, Instant)>>,
}

struct Idle {
    sender: http1::SendRequest<MachineBody>,
    since: Instant,
}

/// A request's hold on the pool: its slot, and its HTTP/1.1 connection, which goes
/// back to the idle ones when the answer is done. It rides on the answer's body (or
/// the upgraded tunnel), so the slot is held for as long as the connection is used.
pub struct Lease {
    connection: Option<(http1::SendRequest<MachineBody>, Arc<MachinePool>)>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Given back before the slot is freed, so the next request in line finds it.
        if let Some((sender, pool)) = self.connection.take()
            && !sender.is_closed()
        {
            let idle = Idle {
                sender,
                since: Instant::now(),
            };
            pool.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(idle);
        }
    }
}

impl Pools {
    /// Pools opening connections within `budget`; a task closes idle connections until
    /// the pools are dropped.
    pub fn new(budget: Budget, limits: UpstreamLimits) -> Pools {
        let machines = Arc::new(Machines::new());
        tokio::spawn(close_idle(Arc::downgrade(&machines)));
        Pools {
            machines,
            budget,
            max_per_machine: limits.max_per_machine,
        }
    }

    fn pool(&self, addr: SocketAddr) -> Arc<MachinePool> {
        if let Some(pool) = self.machines.get(&addr) {
            return pool.clone();
        }
        let max = self.max_per_machine;
        let entry = self.machines.entry(addr).or_insert_with(|| {
            Arc::new(MachinePool {
                slots: Arc::new(Semaphore::new(max)),
                max,
                idle: Mutex::default(),
                h2: tokio::sync::Mutex::default(),
            })
        });
        entry.clone()
    }

    /// The machine's pool and a slot in it for one request.
    async fn enter(
        &self,
        addr: SocketAddr,
        queue_timeout: Duration,
    ) -> Result<(Arc<MachinePool>, OwnedSemaphorePermit), UpstreamError> {
        let pool = self.pool(addr);
        let slot = Pools::slot(&pool, queue_timeout).await?;
        Ok((pool, slot))
    }

    /// A slot for one request to the machine, waiting up to the queue timeout.
    async fn slot(
        pool: &MachinePool,
        queue_timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Ok(slot) = pool.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let wait = pool.slots.clone().acquire_owned();
        match tokio::time::timeout(queue_timeout, wait).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(UpstreamError::Busy(
                "every pooled connection to the machine stayed busy",
            )),
        }
    }

    /// A slot in the machine's pool for a request that brings its own connection (one
    /// lent by the fast path): it counts against the machine's limit as a pooled one.
    pub async fn lend_slot(
        &self,
        addr: SocketAddr,
        queue_timeout: Duration,
    ) -> Result<Lease, UpstreamError> {
        let (_, slot) = self.enter(addr, queue_timeout).await?;
        Ok(Lease {
            connection: None,
            _slot: slot,
        })
    }

    /// Sends an HTTP/1.1 request (origin-form URI) over an idle connection to the
    /// machine, or a new one when none is idle.
    pub async fn send_http1(
        &self,
        addr: SocketAddr,
        mut req: Request<MachineBody>,
        queueing: Queueing,
    ) -> Result<(Response<Incoming>, Lease), SendFailure> {
        let (pool, slot) = match self.enter(addr, queueing.timeout).await {
            Ok(entered) => entered,
            Err(error) => return Err(SendFailure::unsent(error, req)),
        };
        while let Some(mut sender) = pool.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, Lease::new(slot, sender, pool))),
                // Not written: the connection went away in between; try another.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendFailure::sent(&e.into_error())),
                },
            }
        }
        let mut sender = match upstream::connect_http1(addr, &self.budget, queueing.send).await {
            Ok(sender) => sender,
            Err(error) => return Err(SendFailure::unsent(error, req)),
        };
        match sender.send_request(req).await {
            Ok(response) => Ok((response, Lease::new(slot, sender, pool))),
            Err(e) => Err(SendFailure::sent(&e)),
        }
    }

    /// Sends an HTTP/2 request (absolute URI) over the machine's h2c connection.
    pub async fn send_h2(
        &self,
        addr: SocketAddr,
        req: Request<MachineBody>,
        queueing: Queueing,
    ) -> Result<(Response<Incoming>, Lease), SendFailure> {
        let (pool, slot) = match self.enter(addr, queueing.timeout).await {
            Ok(entered) => entered,
            Err(error) => return Err(SendFailure::unsent(error, req)),
        };
        let mut sender = match pool.h2_sender(addr, &self.budget, queueing.send).await {
            Ok(sender) => sender,
            Err(error) => return Err(SendFailure::unsent(error, req)),
        };
        if let Err(e) = sender.ready().await {
            return Err(SendFailure::unsent(UpstreamError::connect(&e), req));
        }
        match sender.send_request(req).await {
            Ok(response) => Ok((
                response,
                Lease {
                    connection: None,
                    _slot: slot,
                },
            )),
            Err(e) => Err(SendFailure::sent(&e)),
        }
    }
}

impl Lease {
    fn new(
        slot: OwnedSemaphorePermit,
        sender: http1::SendRequest<MachineBody>,
        pool: Arc<MachinePool>,
    ) -> Lease {
        Lease {
            connection: Some((sender, pool)),
            _slot: slot,
        }
    }
}

impl MachinePool {
    /// The most recently idle open connection.
    fn take_idle(&self) -> Option<http1::SendRequest<MachineBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Idle { sender, .. }) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// The machine's h2c connection, opened when there is none (one opening at a time).
    async fn h2_sender(
        &self,
        addr: SocketAddr,
        budget: &Budget,
        send: Pace,
    ) -> Result<http2::SendRequest<MachineBody>, UpstreamError> {
        let mut h2 = self.h2.lock().await;
        if let Some((sender, used)) = h2.as_mut().filter(|(s, _)| !s.is_closed()) {
            *used = Instant::now();
            return Ok(sender.clone());
        }
        let io = upstream::connect_tcp(addr, budget, send).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| UpstreamError::connect(&e))?;
        tokio::spawn(connection);
        *h2 = Some((sender.clone(), Instant::now()));
        Ok(sender)
    }

    /// Closes connections idle for `UPSTREAM_POOL_IDLE`; whether nothing is left.
    fn close_idle(&self, now: Instant) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| now - c.since < UPSTREAM_POOL_IDLE && !c.sender.is_closed());
        let h2_gone = match self.h2.try_lock() {
            Ok(mut h2) => {
                let unused = self.slots.available_permits() == self.max;
                if h2
                    .as_ref()
                    .is_some_and(|(_, used)| unused && now - *used >= UPSTREAM_POOL_IDLE)
                {
                    *h2 = None;
                }
                h2.is_none()
            }
            Err(_) => false,
        };
        idle.is_empty() && h2_gone && self.slots.available_permits() == self.max
    }
}

/// Every half idle period, closes idle connections and forgets machines with nothing
/// pooled and no request holding their pool; ends when the pools are dropped.
async fn close_idle(machines: Weak<Machines>) {
    upstream::sweep_idle(machines, |machines, now| {
        // Only this map holds a forgotten pool: nobody is waiting on its slots.
        machines.retain(|_, pool| !(pool.close_idle(now) && Arc::strong_count(pool) == 1));
    })
    .await;
}
