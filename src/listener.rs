//! Listening sockets: socket2 options (SO_REUSEADDR, large backlog) and an
//! accept loop that waits for a connection-limit permit for each connection it accepts
//! (at most one accepted connection per listener waits; the rest stay in the backlog)
//! and backs off when the process runs out of file descriptors instead of spinning; and
//! the descriptors themselves: the open-file limit raised to its hard limit at start,
//! and shared out so that the edge's connections cannot take the ones the API and the
//! rest of edgewake need.

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
/// Pause after an accept error (EMFILE and friends) before trying again, doubled on
/// each failure in a row up to `MAX_ACCEPT_BACKOFF`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Descriptors kept for everything but client and machine connections (the state
/// database, machines' logs and pipes, certificates, the runtime's own): an eighth of
/// the limit, within these bounds.
const INTERNAL_DESCRIPTORS_MIN: usize = 64;
const INTERNAL_DESCRIPTORS_MAX: usize = 4096;

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
    let mut backoff = ACCEPT_BACKOFF;
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
                backoff = ACCEPT_BACKOFF;
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
                // Said once per run of failures, not at every retry.
                if backoff == ACCEPT_BACKOFF {
                    tracing::warn!("accept failed: {e}; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit (the default soft
/// limit, often 1,024, is far below what an edge needs); returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE)");
        return u64::MAX;
    };
    if soft >= hard {
        tracing::info!(limit = soft, "open-file limit (RLIMIT_NOFILE)");
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
            hard
        }
        Err(e) => {
            tracing::warn!(
                limit = soft,
                "cannot raise the open-file limit to {hard}: {e}"
            );
            soft
        }
    }
}

/// This process's soft limit on open files (`u64::MAX` when it cannot be read).
pub fn fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// How many client connections and connections to machines the edge may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    pub clients: usize,
    pub upstream: usize,
}

/// Fits the edge's connection limits under `limit` open files, after `reserved` (the
/// API's connections) and edgewake's own files: each client connection is a descriptor,
/// each connection to a machine another. Limits that do not fit are lowered in
/// proportion to what was asked.
pub fn share_descriptors(limit: u64, reserved: usize, wanted: Shares) -> Shares {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let internal = (limit / 8).clamp(INTERNAL_DESCRIPTORS_MIN, INTERNAL_DESCRIPTORS_MAX);
    let available = limit
        .saturating_sub(internal)
        .saturating_sub(reserved)
        .max(2);
    let asked = wanted.clients.saturating_add(wanted.upstream);
    if asked <= available {
        return wanted;
    }
    let clients = (wanted.clients as u128 * available as u128 / asked as u128) as usize;
    let clients = clients.clamp(1, available - 1);
    Shares {
        clients,
        upstream: available - clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits that fit are kept; ones that do not are lowered in proportion, leaving
    /// the API its connections and edgewake its own files.
    #[test]
    fn descriptors_are_shared_out() {
        let wanted = Shares {
            clients: 16_384,
            upstream: 16_384,
        };
        assert_eq!(share_descriptors(1 << 20, 256, wanted), wanted);
        let shared = share_descriptors(20_000, 256, wanted);
        assert_eq!(shared.clients, shared.upstream);
        assert_eq!(shared.clients + shared.upstream, 20_000 - 2_500 - 256);
        let uneven = Shares {
            clients: 3_000,
            upstream: 1_000,
        };
        let shared = share_descriptors(1024, 256, uneven);
        assert_eq!(shared.clients + shared.upstream, 1024 - 128 - 256);
        assert_eq!(shared.clients, 3 * shared.upstream);
    }

    /// Even a tiny limit leaves one of each.
    #[test]
    fn tiny_limits_leave_one_of_each() {
        let shared = share_descriptors(
            16,
            256,
            Shares {
                clients: 10,
                upstream: 10,
            },
        );
        assert_eq!(
            shared,
            Shares {
                clients: 1,
                upstream: 1
            }
        );
    }

    /// The soft limit ends at the hard limit.
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{Resource, getrlimit};
        let limit = raise_fd_limit();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((limit, soft), (hard, hard));
    }
}
