//! Client connections on the HTTP/1.1 fast path (`proxy::h1`): request heads read here
//! under the connection's timeouts, each served by the proxy in this task; hyper's
//! path takes over, with every byte read so far, when a request is not the fast
//! path's.

use super::rewind::Rewind;
use super::{ClientConnection, Edge, EdgeSettings, serve_connection};
use crate::connection::PacedIo;
use crate::proxy::h1::head::{self, Parsed};
use crate::proxy::h1::{Connection, Step};
use crate::proxy::upstream::UPSTREAM_POOL_IDLE;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

/// How reading the next request head ended.
// Made once per request and moved once: boxing the head would add an allocation to
// every request to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    Head(head::RequestHead),
    /// Closed, idle past the keep-alive timeout, too slow, or the edge shuts down.
    Done,
    /// For hyper's path.
    Fallback,
    /// Refused: answered with 400 and closed.
    Refused,
}

/// Serves a client connection's HTTP/1.1 requests until it ends or one is for hyper.
/// Writes to the client are paced, as on hyper's path.
pub(super) async fn serve<I>(
    io: I,
    client: ClientConnection,
    edge: Arc<Edge>,
    settings: Arc<EdgeSettings>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = PacedIo::new(io, settings.policy.send);
    let mut conn = Connection::new(io, client.inbound, client.peer);
    let fall_back_now = serve_requests(&mut conn, &edge, &settings).await;
    // Hyper's path has connections of its own; the next client may use this one.
    conn.park_machine(&edge.proxy);
    if fall_back_now {
        fall_back(conn, client, edge, settings).await;
    }
}

/// Serves requests until the connection ends (false) or one is for hyper's path (true).
async fn serve_requests<I>(
    conn: &mut Connection<PacedIo<I>>,
    edge: &Edge,
    settings: &EdgeSettings,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // The connection's own token, under the edge's, while it is on the fast path:
    // checking it and waiting on it take its own locks, none that every connection on
    // every worker shares (it joins and leaves the edge token's list once). One wait
    // for the whole connection: a new one per request would join and leave the
    // token's list of waiters every time.
    let stop = edge.cancel.child_token();
    let mut shutdown = std::pin::pin!(stop.cancelled());
    loop {
        let head = match read_head(conn, shutdown.as_mut(), settings).await {
            HeadRead::Head(head) => head,
            HeadRead::Done => return false,
            HeadRead::Refused => {
                let error = crate::proxy::ProxyError::AmbiguousFraming;
                conn.refuse_unrouted(&edge.proxy, &error).await;
                return false;
            }
            HeadRead::Fallback => return true,
        };
        match conn.serve(&edge.proxy, head).await {
            Step::KeepAlive if !stop.is_cancelled() => {}
            Step::KeepAlive | Step::Close => return false,
            Step::Fallback => return true,
        }
    }
}

/// Hyper's path serves the rest of the connection, from the bytes read so far.
async fn fall_back<I>(
    conn: Connection<PacedIo<I>>,
    client: ClientConnection,
    edge: Arc<Edge>,
    settings: Arc<EdgeSettings>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Hyper's path paces its writes itself.
    let io = Rewind::new(conn.buf.freeze(), conn.io.into_inner());
    serve_connection(io, client, edge, settings).await;
}

/// Reads until a whole request head is in the buffer. Waiting for a request's first
/// byte is bounded by the idle timeout, the whole head by the header read timeout, as
/// on hyper's path; a head past the size limit is hyper's to refuse. A client that has
/// gone quiet does not keep its machine connection (a socket, its buffers, a budget
/// slot), nor the buffers and map of its last request, longer than the pool keeps an
/// idle connection.
async fn read_head<I>(
    conn: &mut Connection<I>,
    mut shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    settings: &EdgeSettings,
) -> HeadRead
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let policy = &settings.policy;
    let began = Instant::now();
    let head_deadline = began + policy.header_read_timeout;
    let release_at = began + UPSTREAM_POOL_IDLE;
    loop {
        match conn.parse_head(policy.max_header_count) {
            Parsed::Head(head) => return HeadRead::Head(head),
            Parsed::Unusual => return HeadRead::Fallback,
            Parsed::Ambiguous => return HeadRead::Refused,
            Parsed::Partial if conn.buf.len() >= policy.max_header_bytes => {
                return HeadRead::Fallback;
            }
            Parsed::Partial => {}
        }
        let idle = conn.buf.is_empty();
        let deadline = match idle {
            true => head_deadline.min(began + policy.idle_timeout),
            false => head_deadline,
        };
        let release = idle && conn.holds_more_than_its_buffer() && release_at < deadline;
        let wait_until = if release { release_at } else { deadline };
        // The read first: when it is ready, the shutdown is not looked at (a lock).
        let read = tokio::select! {
            biased;
            read = conn.read_more_by(wait_until) => read,
            () = shutdown.as_mut(), if idle => return HeadRead::Done,
        };
        match read {
            Some(Ok(0)) | Some(Err(_)) => return HeadRead::Done,
            Some(Ok(_)) => {}
            None if release => conn.release_held(),
            None => return HeadRead::Done,
        }
    }
}
