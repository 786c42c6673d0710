//! The API's listener: a small connection cap of its own (`api.max_connections`), and its
//! connections served under a `ClientPolicy` like the edge's (`api.header_read_timeout`,
//! `api.idle_timeout`), so idle or silent clients cannot pile up.

use crate::connection::{self, ClientPolicy, Guarded};
use crate::listener::{self, Accepted};
use crate::machines::activity::{Activity, InFlight};
use axum::Router;
use hyper::service::{Service, service_fn};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` on `listener` until `cancel` fires; each connection's task is
/// tracked on `connections`, so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    policy: ClientPolicy,
    cancel: CancellationToken,
    connections: TaskTracker,
) {
    let builder = Arc::new(connection::builder(&policy));
    let limit = Arc::new(Semaphore::new(max_connections));
    listener::accept_loop(listener, limit, cancel.clone(), |accepted| {
        let Accepted {
            stream,
            peer,
            permit,
        } = accepted;
        let (router, builder, cancel) = (router.clone(), builder.clone(), cancel.clone());
        connections.spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let requests = activity.clone();
            let api = TowerToHyperService::new(router);
            let service = service_fn(move |req| {
                let request = InFlight::enter(&requests);
                let answer = api.call(req);
                async move { Ok::<_, std::convert::Infallible>(answered(answer.await, request)) }
            });
            let nothing_held = |_| {};
            connection::serve_connection(
                stream,
                service,
                &activity,
                nothing_held,
                &builder,
                &policy,
                &cancel,
                peer,
            )
            .await;
        });
    })
    .await;
}

/// The router's answer, counted in flight until its body is done.
fn answered(
    answer: Result<axum::response::Response, std::convert::Infallible>,
    request: InFlight,
) -> http::Response<Guarded<axum::body::Body>> {
    match answer {
        Ok(response) => response.map(|body| Guarded::new(body, request)),
        Err(never) => match never {},
    }
}
