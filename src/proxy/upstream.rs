//! Connections to machines. An HTTP/1.1 client connection owns its own upstream: the
//! connection to the machine its last request went to. HTTP/1.1 clients send one
//! request at a time, so no pool, pool lock or per-request task is needed (the pooled
//! client costs 1–3 µs a request more on this workload). HTTP/2 clients, upgrades and
//! h2c backends use the shared pool instead.
//!
//! Every failure says whether the request had left edgewake: a request the machine
//! never saw may go to another machine; one it saw, only the client may send again.

use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How long connecting to a started machine may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body on its way to a machine: the client's as it streams, or one held
/// whole (a request sent again, or kept for a fly-replay).
pub type MachineBody = Either<Incoming, Full<Bytes>>;

/// How the exchange with a machine failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the machine: it never saw the request.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request was sent, at least in part, then the exchange failed.
    #[error("{0}")]
    Exchange(String),
}

impl UpstreamError {
    /// Whether the machine may have seen the request (so sending it again elsewhere
    /// could do its work twice).
    pub fn request_sent(&self) -> bool {
        matches!(self, UpstreamError::Exchange(_))
    }

    pub(super) fn connect(error: &dyn std::error::Error) -> UpstreamError {
        UpstreamError::Connect(error_chain(error))
    }

    pub(super) fn exchange(error: &dyn std::error::Error) -> UpstreamError {
        UpstreamError::Exchange(error_chain(error))
    }
}

/// Why a send failed, and the request when the machine never saw it (so it may go to
/// another machine).
pub struct SendFailure {
    pub error: UpstreamError,
    pub unsent: Option<Request<MachineBody>>,
}

impl SendFailure {
    fn sent(error: &hyper::Error) -> SendFailure {
        SendFailure {
            error: UpstreamError::exchange(error),
            unsent: None,
        }
    }
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
        let sender = match connect(addr).await {
            Ok(sender) => sender,
            Err(error) => {
                let unsent = Some(req);
                return Err(SendFailure { error, unsent });
            }
        };
        let cached = slot.insert(Cached { addr, sender });
        cached
            .sender
            .send_request(req)
            .await
            .map_err(|e| SendFailure::sent(&e))
    }
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<MachineBody>, UpstreamError> {
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    let stream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(UpstreamError::connect(&e)),
        Err(_) => return Err(UpstreamError::Connect("connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::connect(&e))?;
    tokio::spawn(connection);
    Ok(sender)
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
