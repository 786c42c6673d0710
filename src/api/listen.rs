//! The API's listener: a small connection cap of its own (`api.max_connections`), and its
//! connections served under a `ClientPolicy` like the edge's (`api.header_read_timeout`,
//! `api.idle_timeout`), so idle or silent clients cannot pile up. An HTTP/2 answer its
//! client does not take is cut as the edge's are (`connection::stall`): else a client
//! that grants no window would keep its connection busy, and one of the few, for ever.

use crate::connection::{self, Answers, ClientPolicy, TooSlow, Watched};
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
            let answers = Arc::new(Answers::new(policy.send));
            let swept = answers.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let request = InFlight::enter(&requests);
                let watched_by = answers.for_request(req.version());
                let answer = api.call(req);
                async move {
                    let answer = answered(answer.await, request, watched_by);
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let on_tick = move |_| {
                swept.sweep();
            };
            connection::serve_connection(
                stream, service, &activity, on_tick, &builder, &policy, &cancel, peer,
            )
            .await;
        });
    })
    .await;
}

/// The router's answer, counted in flight until its body is done, and on HTTP/2
/// watched by the connection's `Answers`.
fn answered(
    answer: Result<axum::response::Response, std::convert::Infallible>,
    request: InFlight,
    watched_by: Option<Arc<Answers>>,
) -> http::Response<Watched<axum::body::Body, InFlight>> {
    let response = match answer {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(|body| Watched::held(watched_by, body, request))
}

/// A cut answer ends its body with this error.
impl From<TooSlow> for axum::Error {
    fn from(too_slow: TooSlow) -> axum::Error {
        axum::Error::new(too_slow)
    }
}
