//! The edge's client connections: TLS first on the HTTPS listener, then HTTP/1.1 +
//! HTTP/2 served under the edge's `ClientPolicy` (header, idle, body and write timeouts,
//! HTTP/2 keep-alive, a graceful shutdown cut after its grace, HTTP/2 answers the client
//! does not take cut; see `connection`).
//! HTTP/1.1 connections start on the fast path (`fast`, `proxy::h1`) and move to
//! hyper's for anything unusual, with the bytes read so far (`rewind`). With `[edge]
//! workers`, connections are served on the edge's `workers` rather than the main
//! runtime.

mod fast;
mod rewind;
mod workers;

pub use workers::Workers;

use crate::connection::{self, Answers, ClientPolicy, PacedIo, Watched};
use crate::listener::{self, Accepted};
use crate::machines::activity::{Activity, InFlight};
use crate::proxy::upstream::{ConnectionUpstream, UPSTREAM_POOL_IDLE};
use crate::proxy::{ConnectionPermit, Inbound, Proxy};
use crate::tls::{Handshake, Tls};
use crate::trusted::Trusted;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything the edge's connections share.
pub struct Edge {
    pub proxy: Arc<Proxy>,
    /// One permit per client connection, taken before accept.
    pub limit: Arc<Semaphore>,
    /// What `limit` was sized to; a reload grows or shrinks it by the difference.
    max_connections: std::sync::Mutex<usize>,
    pub cancel: CancellationToken,
    pub connections: TaskTracker,
    /// Where connections are served (none: on the main runtime).
    pub workers: Workers,
    /// Read once per connection (a reload applies to connections accepted after it).
    settings: ArcSwap<EdgeSettings>,
}

/// What a reload may change about the edge's client connections.
pub struct EdgeSettings {
    /// Peers allowed to say who the client is (PROXY protocol).
    pub trusted: Trusted,
    pub policy: ClientPolicy,
    builder: auto::Builder<TokioExecutor>,
}

impl EdgeSettings {
    pub fn new(trusted: Trusted, policy: ClientPolicy) -> EdgeSettings {
        EdgeSettings {
            trusted,
            builder: connection::builder(&policy),
            policy,
        }
    }
}

impl Edge {
    pub fn new(
        proxy: Arc<Proxy>,
        max_connections: usize,
        cancel: CancellationToken,
        settings: EdgeSettings,
        workers: Workers,
    ) -> Edge {
        Edge {
            proxy,
            limit: Arc::new(Semaphore::new(max_connections)),
            max_connections: std::sync::Mutex::new(max_connections),
            cancel,
            connections: TaskTracker::new(),
            workers,
            settings: ArcSwap::from_pointee(settings),
        }
    }

    /// Replaces the connection settings (a config reload).
    pub fn set_settings(&self, settings: EdgeSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Resizes the connection limit. More room is there at once; less is taken back as
    /// connections close (a task holds the difference and gives it up for good), so
    /// open connections are never cut. Called within the runtime (it spawns that task).
    pub fn set_max_connections(&self, max: usize) {
        let mut current = self
            .max_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if max > *current {
            self.limit.add_permits(max - *current);
        } else if let Ok(fewer) = u32::try_from(*current - max)
            && fewer > 0
        {
            let (limit, cancel) = (self.limit.clone(), self.cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    taken = limit.acquire_many_owned(fewer) => {
                        if let Ok(permits) = taken {
                            permits.forget();
                        }
                    }
                }
            });
        }
        *current = max;
    }
}

/// One client connection: where it came from, which listener took it, and its slot
/// under the connection limit.
#[derive(Clone)]
struct ClientConnection {
    peer: SocketAddr,
    inbound: Inbound,
    permit: ConnectionPermit,
}

impl ClientConnection {
    /// `slot`: its permit under the limit and, on a worker, its count among the
    /// worker's open connections, both held as long as the connection or a tunnel it
    /// became.
    fn new(
        accepted_peer: SocketAddr,
        inbound: Inbound,
        slot: (tokio::sync::OwnedSemaphorePermit, Option<workers::Open>),
    ) -> ClientConnection {
        ClientConnection {
            peer: accepted_peer,
            inbound,
            permit: ConnectionPermit(Arc::new(slot)),
        }
    }
}

impl Edge {
    /// The client of a new connection: a trusted peer on a PROXY protocol listener says
    /// who it is (a bad header closes the connection); anyone else is who they are. An
    /// untrusted peer's header is not read, so HTTP refuses it as a bad request.
    async fn client_behind(
        stream: &mut tokio::net::TcpStream,
        mut client: ClientConnection,
        trusted: &Trusted,
    ) -> Option<ClientConnection> {
        if !client.inbound.proxy_protocol || !trusted.contains(client.peer.ip()) {
            return Some(client);
        }
        match crate::proxy_protocol::read_header(stream).await {
            Ok(source) => {
                client.peer = source.unwrap_or(client.peer);
                Some(client)
            }
            Err(e) => {
                tracing::debug!(peer = %client.peer, "closing: {e}");
                None
            }
        }
    }
}

/// Accepts connections until cancelled. On the HTTPS listener (`tls` given) the
/// handshake runs in the connection's task under its timeout; then HTTP, or raw TCP for
/// services whose port has only the `tls` handler.
pub async fn serve(tcp: TcpListener, edge: Arc<Edge>, inbound: Inbound, tls: Option<Arc<Tls>>) {
    let cancel = edge.cancel.clone();
    listener::accept_loop(tcp, edge.limit.clone(), cancel, |accepted| {
        let Accepted {
            stream,
            peer,
            permit,
        } = accepted;
        let (edge2, tls) = (edge.clone(), tls.clone());
        edge.workers
            .hand_off(&edge.connections, stream, move |stream, open| {
                let client = ClientConnection::new(peer, inbound, (permit, open));
                serve_client(stream, client, edge2, tls)
            });
    })
    .await;
}

/// One accepted client connection, from its PROXY header to its last request.
async fn serve_client(
    mut stream: tokio::net::TcpStream,
    client: ClientConnection,
    edge: Arc<Edge>,
    tls: Option<Arc<Tls>>,
) {
    let peer = client.peer;
    let settings = edge.settings.load_full();
    let Some(client) = Edge::client_behind(&mut stream, client, &settings.trusted).await else {
        return;
    };
    let Some(tls) = tls else {
        if client.inbound.backhaul {
            // Relayed requests are signed and checked by hyper's path.
            return serve_connection(stream, client, edge, settings).await;
        }
        return fast::serve(stream, client, edge, settings).await;
    };
    // The ClientHello names the app before the handshake: wake it now if it asks.
    if let Some(host) = crate::proxy::wake_early::peek_server_name(&stream).await {
        let port = client.inbound.service_port;
        edge.proxy.wake_early(&host, port, client.peer);
    }
    match tls.accept(stream).await {
        Ok(Handshake::Client(stream)) => {
            serve_tls_connection(*stream, client, edge, settings).await
        }
        Ok(Handshake::AcmeValidation) => {
            tracing::debug!(%peer, "answered an ACME TLS-ALPN-01 validation");
        }
        Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
    }
}

async fn serve_tls_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    client: ClientConnection,
    edge: Arc<Edge>,
    settings: Arc<EdgeSettings>,
) {
    let port = client.inbound.service_port;
    let sni = stream.get_ref().1.server_name().map(str::to_string);
    let raw = sni
        .as_deref()
        .and_then(|host| edge.proxy.raw_tcp_app(host, port));
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    match raw {
        Some(app) => {
            let stream = PacedIo::new(stream, settings.policy.send);
            edge.proxy.tunnel_tcp(&app, port, stream, client.peer).await
        }
        None if h2 => serve_connection(stream, client, edge, settings).await,
        None => fast::serve(stream, client, edge, settings).await,
    }
}

/// Serves HTTP on one connection until it ends, is idle past the keep-alive timeout, or
/// the edge shuts down. Each HTTP/1.1 request carries the connection's own upstream.
async fn serve_connection<I>(
    io: I,
    client: ClientConnection,
    edge: Arc<Edge>,
    settings: Arc<EdgeSettings>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let (proxy, requests, conn_client) = (edge.proxy.clone(), activity.clone(), client.clone());
    let own_upstream = Arc::new(ConnectionUpstream::default());
    let upstream = own_upstream.clone();
    let answers = Arc::new(Answers::new(settings.policy.send));
    let (swept, peer) = (answers.clone(), client.peer);
    let on_tick = move |idle| {
        let cut = swept.sweep();
        if cut > 0 {
            tracing::debug!(%peer, cut, "HTTP/2 answers cut: the client kept them waiting past the send timeout");
        }
        // A client that has gone quiet does not keep a connection to a machine (a
        // socket, its buffers, a budget slot): no longer than the pool keeps an idle one.
        if idle >= UPSTREAM_POOL_IDLE {
            upstream.release_if_unused();
        }
    };
    let service = service_fn(move |mut req| {
        let (proxy, request, client) = (
            proxy.clone(),
            InFlight::enter(&requests),
            conn_client.clone(),
        );
        req.extensions_mut().insert(client.permit);
        if req.version() == http::Version::HTTP_11 {
            req.extensions_mut().insert(own_upstream.clone());
        }
        let watched_by = answers.for_request(req.version());
        // Boxed: hyper moves the request's future (kilobytes) into its HTTP/1 dispatcher
        // or, for each HTTP/2 stream, into a task of its own; a box moves as a pointer.
        Box::pin(async move {
            let response = proxy.handle(req, client.inbound, client.peer).await;
            Ok::<_, Infallible>(response.map(move |body| Watched::held(watched_by, body, request)))
        })
    });
    connection::serve_connection(
        io,
        service,
        &activity,
        on_tick,
        &settings.builder,
        &settings.policy,
        &edge.cancel,
        client.peer,
    )
    .await;
}
