//! Connections to machines. An HTTP/1.1 client connection owns its own upstream: the
//! connection to the machine its last request went to. HTTP/1.1 clients send one
//! request at a time, so no pool, pool lock or per-request task is needed (a pooled
//! client costs 1–3 µs a request more on this workload). An upgrade gets a connection
//! of its own (`send_once`); HTTP/2 clients' streams with a body and h2c backends use
//! the bounded `pool`, those without one a connection lent by the fast path
//! (`h1::lent`).
//!
//! Every connection to a machine takes a slot of the global `Budget` (each is a file
//! descriptor) for as long as its socket lives, and its writes are paced: a machine that
//! stops reading fails the exchange. Every failure says whether the request had left
//! edgewake: a request the machine never saw may go to another machine; one it saw,
//! only the client may send again.

use crate::connection::{BodyError, Pace, PacedBody, PacedIo, TooSlow};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long connecting to a started machine may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection to a machine is kept: in the pool, or by a client
/// connection with no request.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);

/// A client's request body, paced (`edge.client_body_timeout`, `client_min_rate`).
pub type ClientBody = PacedBody<Incoming>;

/// A request body on its way to a machine: the client's as it streams, or one held
/// whole (a request sent again, or kept for a fly-replay).
pub type MachineBody = Either<ClientBody, Full<Bytes>>;

/// A connection to a machine: its socket, writes paced, holding its budget slot.
pub type MachineIo = PacedIo<TcpStream>;

/// How the exchange with a machine failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the machine: it never saw the request.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Every connection edgewake may open (to all machines, or pooled to this one) is
    /// in use: the request was not sent.
    #[error("no connection free: {0}")]
    Busy(&'static str),
    /// The request was sent, at least in part, then the exchange failed.
    #[error("{0}")]
    Exchange(String),
    /// The machine did not answer, or did not read, within its timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The client's request body failed on the way (too slow, malformed, cut off).
    #[error("the client's request body failed: {0}")]
    ClientBody(String, ClientFault),
}

/// What was wrong with a client's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    TooSlow,
    Malformed,
}

impl UpstreamError {
    /// Whether the machine may have seen the request (so sending it again elsewhere
    /// could do its work twice).
    pub fn request_sent(&self) -> bool {
        !matches!(self, UpstreamError::Connect(_) | UpstreamError::Busy(_))
    }

    pub(super) fn connect(error: &dyn std::error::Error) -> UpstreamError {
        UpstreamError::Connect(error_chain(error))
    }

    /// A failure after the request was sent, by whose fault: the client's body, the
    /// machine's pace, or the exchange itself.
    pub(super) fn exchange(error: &(dyn std::error::Error + 'static)) -> UpstreamError {
        let chain = error_chain(error);
        match find_cause(error) {
            Some(Cause::ClientBody(fault)) => UpstreamError::ClientBody(chain, fault),
            Some(Cause::MachineTooSlow) => UpstreamError::Timeout(chain),
            None => UpstreamError::Exchange(chain),
        }
    }
}

enum Cause {
    ClientBody(ClientFault),
    MachineTooSlow,
}

/// Walks the error's causes for the client's body error or a paced write that timed out.
fn find_cause(error: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(body) = error.downcast_ref::<BodyError>() {
            return Some(Cause::ClientBody(match body {
                BodyError::TooSlow(_) => ClientFault::TooSlow,
                BodyError::Source(_) => ClientFault::Malformed,
            }));
        }
        // A paced write's `TooSlow` is inside an `io::Error`, whose `source` skips it.
        let io_inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref());
        if io_inner.is_some_and(|inner| inner.is::<TooSlow>()) {
            return Some(Cause::MachineTooSlow);
        }
        cause = error.source();
    }
    None
}

/// Why a send failed, and the request when the machine never saw it (so it may go to
/// another machine).
pub struct SendFailure {
    pub error: UpstreamError,
    pub unsent: Option<Request<MachineBody>>,
}

impl SendFailure {
    pub(super) fn sent(error: &hyper::Error) -> SendFailure {
        SendFailure {
            error: UpstreamError::exchange(error),
            unsent: None,
        }
    }

    pub(super) fn unsent(error: UpstreamError, req: Request<MachineBody>) -> SendFailure {
        SendFailure {
            error,
            unsent: Some(req),
        }
    }
}

/// How many connections to machines may be open at once, all machines together.
#[derive(Clone)]
pub struct Budget(Arc<Semaphore>);

impl Budget {
    pub fn new(max_connections: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(max_connections)))
    }

    /// How many more connections may be opened.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// A slot for one more connection, if the budget has one.
    fn slot(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        self.0
            .clone()
            .try_acquire_owned()
            .map_err(|_| UpstreamError::Busy("the budget of connections to machines is spent"))
    }
}

/// Opens a connection to a machine: a budget slot, a TCP connect under its timeout,
/// writes paced by `send`. The slot is held by the socket for as long as it is open,
/// through an upgrade too.
pub async fn connect_tcp(
    addr: SocketAddr,
    budget: &Budget,
    send: Pace,
) -> Result<MachineIo, UpstreamError> {
    let slot = budget.slot()?;
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    let stream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(UpstreamError::connect(&e)),
        Err(_) => return Err(UpstreamError::Connect("connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    Ok(PacedIo::new(stream, send).holding(slot))
}

/// An HTTP/1.1 connection to a machine, driven by a task of its own.
pub async fn connect_http1(
    addr: SocketAddr,
    budget: &Budget,
    send: Pace,
) -> Result<http1::SendRequest<MachineBody>, UpstreamError> {
    let io = connect_tcp(addr, budget, send).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| UpstreamError::connect(&e))?;
    tokio::spawn(connection.with_upgrades());
    Ok(sender)
}

/// Sends `req` on a new connection of its own (an upgrade, whose tunnel keeps it).
pub async fn send_once(
    addr: SocketAddr,
    req: Request<MachineBody>,
    budget: &Budget,
    send: Pace,
) -> Result<Response<Incoming>, SendFailure> {
    let mut sender = match connect_http1(addr, budget, send).await {
        Ok(sender) => sender,
        Err(error) => return Err(SendFailure::unsent(error, req)),
    };
    sender
        .send_request(req)
        .await
        .map_err(|e| SendFailure::sent(&e))
}

struct Cached {
    addr: SocketAddr,
    sender: http1::SendRequest<MachineBody>,
}

/// Put in each HTTP/1.1 request's extensions by the connection that carries it.
#[derive(Default)]
pub struct ConnectionUpstream(Mutex<Option<Cached>>);

impl ConnectionUpstream {
    /// Sends `req` (origin-form URI, Host set) to `addr`, reusing the connection when it
    /// goes to the same machine address and is still open. When no connection could be
    /// made, the request comes back unsent.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<MachineBody>,
        budget: &Budget,
        send: Pace,
    ) -> Result<Response<Incoming>, SendFailure> {
        let mut slot = self.0.lock().await;
        let reusable = slot
            .as_mut()
            .filter(|c| c.addr == addr && !c.sender.is_closed());
        if let Some(cached) = reusable
            && cached.sender.ready().await.is_ok()
        {
            match cached.sender.try_send_request(req).await {
                Ok(response) => return Ok(response),
                // Not written: the connection went away in between; use a new one.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendFailure::sent(&e.into_error())),
                },
            }
        }
        // The old connection (and its budget slot) goes before a new one is counted.
        *slot = None;
        let sender = match connect_http1(addr, budget, send).await {
            Ok(sender) => sender,
            Err(error) => return Err(SendFailure::unsent(error, req)),
        };
        let cached = slot.insert(Cached { addr, sender });
        cached
            .sender
            .send_request(req)
            .await
            .map_err(|e| SendFailure::sent(&e))
    }

    /// Closes the connection if no request is using it (the client connection has gone
    /// quiet): its socket, buffers and budget slot are not held for an idle client.
    pub fn release_if_unused(&self) {
        if let Ok(mut slot) = self.0.try_lock() {
            *slot = None;
        }
    }
}

/// Every half idle period, lets `close_idle` close what has been idle for the idle
/// period (`now` given); ends once `owner` is dropped.
pub async fn sweep_idle<T>(owner: std::sync::Weak<T>, close_idle: impl Fn(&T, Instant)) {
    let mut tick = tokio::time::interval(UPSTREAM_POOL_IDLE / 2);
    loop {
        tick.tick().await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        close_idle(&owner, Instant::now());
    }
}

/// The error and its causes on one line, for the log.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A machine's answer as it is streamed on: each next part within `read`.
pub fn paced_answer(body: Incoming, read: Pace) -> PacedBody<Incoming> {
    PacedBody::new(body, read)
}

/// `http://<authority><path>`: the original's path and query sent under another
/// authority (an h2c machine's routed authority, another node's backhaul).
pub fn http_uri(original: &http::Uri, authority: &[u8]) -> http::Uri {
    use http::uri::{Authority, PathAndQuery, Scheme};
    let path = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Authority::try_from(authority).ok();
    parts.path_and_query = Some(path);
    http::Uri::from_parts(parts).unwrap_or_else(|_| original.clone())
}
