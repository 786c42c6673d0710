//! HTTP serving for the edge: hyper-util's auto builder (HTTP/1.1 and HTTP/2) per
//! connection, shut down gracefully when asked — and awaited, so in-flight requests
//! finish.

use crate::listener::{self, Accepted};
use crate::proxy::{Listener, Proxy};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the edge's connections share.
pub struct Edge {
    pub proxy: Arc<Proxy>,
    pub listener: Listener,
    pub limit: Arc<Semaphore>,
    pub cancel: CancellationToken,
    pub connections: TaskTracker,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accepts connections on `tcp` and serves them through the proxy until cancelled.
pub async fn serve(tcp: TcpListener, edge: Arc<Edge>) {
    let builder = Arc::new(builder());
    let cancel = edge.cancel.clone();
    listener::accept_loop(tcp, edge.limit.clone(), cancel, |accepted| {
        let (edge2, builder) = (edge.clone(), builder.clone());
        edge.connections
            .spawn(serve_connection(accepted, edge2, builder));
    })
    .await;
}

async fn serve_connection(
    accepted: Accepted,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let (proxy, listener) = (edge.proxy.clone(), edge.listener);
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, listener, peer).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
        }
        () = edge.cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(permit);
}
