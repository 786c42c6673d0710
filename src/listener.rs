//! Listening sockets: socket2 options (SO_REUSEADDR, large backlog) and an
//! accept loop that waits for a connection-limit permit for each connection it accepts
//! and backs off when the process runs out of file descriptors instead of spinning.

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel may queue before accept.
pub const LISTEN_BACKLOG: i32 = 4096;
/// TCP keepalive on client connections: a client that vanished without a FIN (a NAT
/// timeout) is noticed, so its WebSocket stops counting as activity.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after an accept error (EMFILE and friends) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a TCP listener with the options a busy edge wants.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // No SO_REUSEPORT: a second edgewake on the same port must fail to start, not
    // silently take half the traffic with a state of its own.
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// An accepted connection with the permit that counts it against the limit.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

/// Accepts until `cancel` fires, handing each connection to `serve` once it has a
/// permit. The permit is taken after the accept, not before: listeners share one limit,
/// and a permit held by a listener waiting in `accept` (one nobody connects to) would be
/// taken from the others (with a limit of 1, all of it). So each listener holds at most
/// one connection beyond the limit, unserved, and the rest wait in the kernel's backlog.
pub async fn accept_loop(
    listener: TcpListener,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
    mut serve: impl FnMut(Accepted),
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let permit = tokio::select! {
                    () = cancel.cancelled() => return,
                    permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                };
                let _ = stream.set_nodelay(true);
                let keepalive = TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL);
                let _ = SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                serve(Accepted {
                    stream,
                    peer,
                    permit,
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
