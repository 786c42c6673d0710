//! One HTTP connection (HTTP/1.1, or HTTP/2 by ALPN or prior knowledge) served under a
//! `ClientPolicy`: until it ends, is idle past the idle timeout, or the server shuts
//! down; then gracefully (HTTP/2: GOAWAY), and cut when the grace runs out, so a
//! client that never acknowledges cannot keep its slot.

use super::ClientPolicy;
use super::io::PacedIo;
use crate::machines::activity::{Activity, InFlight};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// hyper's own header-count limit. Left unset when the policy asks for it: a set limit
/// makes hyper fill a fresh index array for every request it parses (a 6 KB copy,
/// measured at ~4 % of edgewake's user time), the default one is used as it stands.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// A hyper-util server builder for connections under `policy`.
pub fn builder(policy: &ClientPolicy) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout)
        .max_buf_size(policy.max_header_bytes);
    if policy.max_header_count != HYPER_DEFAULT_MAX_HEADERS {
        http1.max_headers(policy.max_header_count);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(policy.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(policy.h2_keepalive_interval)
        .keep_alive_timeout(policy.h2_keepalive_timeout);
    builder
}

/// How often an open connection looks at how long it has been idle (and sweeps its
/// HTTP/2 answers), at most.
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// Serves `service` on `io` until the connection ends, is idle (nothing in flight on
/// `activity`) for the idle timeout, or `cancel` fires. Writes to the client are paced
/// by `policy.send`. The service counts its requests on `activity` (see `Guarded`);
/// `on_tick` is told, every few seconds (at least four times per idle and per send
/// timeout), how long the connection has been idle, zero while it is busy (so what it
/// holds for requests can be let go while there are none, and answers the client does
/// not take are swept: `stall`).
#[allow(clippy::too_many_arguments)] // one connection's parts, each from elsewhere
pub async fn serve_connection<I, S, B>(
    io: I,
    service: S,
    activity: &Activity,
    on_tick: impl Fn(Duration),
    builder: &auto::Builder<TokioExecutor>,
    policy: &ClientPolicy,
    cancel: &CancellationToken,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    activity.touch();
    let io = TokioIo::new(PacedIo::new(io, policy.send));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let idle_timeout = policy.idle_timeout;
    let check_every =
        (idle_timeout.min(policy.send.timeout) / 4).clamp(Duration::from_millis(10), IDLE_CHECK);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended with an error: {e}");
                }
                return;
            }
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(check_every) => {
                let idle = activity.idle_for();
                if idle >= idle_timeout {
                    break;
                }
                on_tick(idle);
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(policy.shutdown_grace, conn)
        .await
        .is_err()
    {
        tracing::debug!(%peer, grace = ?policy.shutdown_grace, "connection cut: it did not close in its grace");
    }
}

/// A response body that holds `G` until it is done (or dropped): a request counted in
/// flight (so a connection streaming an answer is never idle), a pooled connection.
pub struct Guarded<B, G = InFlight> {
    inner: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Guarded<B, G> {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
