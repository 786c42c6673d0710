//! A client connection's own upstream: the HTTP/1.1 connection to the machine its last
//! request went to, owned by that client connection. HTTP/1.1 clients send one request
//! at a time, so no pool, pool lock or per-request task is needed (measured in
//! shared/reference/perf-notes.md: the pooled client costs 1–3 µs a request more).
//! HTTP/2 clients, upgrades and h2c backends use the shared pool instead.

use super::forward::UPSTREAM_CONNECT_TIMEOUT;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Why the machine could not be reached or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct Cached {
    addr: SocketAddr,
    sender: http1::SendRequest<Incoming>,
}

/// Put in each HTTP/1.1 request's extensions by the connection that carries it.
#[derive(Default)]
pub struct ConnectionUpstream(Mutex<Option<Cached>>);

impl ConnectionUpstream {
    /// Sends `req` (origin-form URI, Host set) to `addr`, reusing the connection when it
    /// goes to the same machine address and is still open.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
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
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let connect =
            tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let stream = connect
            .map_err(|_| UpstreamError::Connect(timed_out()))?
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let cached = slot.insert(Cached { addr, sender });
        Ok(cached.sender.send_request(req).await?)
    }
}
