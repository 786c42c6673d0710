//! Phase 6, respond: every proxy error becomes one status, `Retry-After` where trying
//! again can help, and a short body: what went wrong in a few words and the request
//! id. What a client must not see (machine ids, commands, exit codes, OS errors) goes
//! to the log under the same request id.

use super::ProxyBody;
use super::checks::ALLOWED_METHODS;
use super::replay::ReplayError;
use super::upstream::{ClientFault, UpstreamError};
use crate::cluster::BackhaulError;
use crate::connection::BodyError;
use crate::lifecycle::{AcquireError, WakeError};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;

/// Seconds a client should wait before retrying a request that found no machine ready
/// (unless its machine's starts are held off for longer).
const RETRY_AFTER_SECS: u64 = 1;

/// Why the proxy could not forward a request, and which side it was on.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request names no valid host")]
    MissingHost,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3): a machine might read
    /// the body's end elsewhere, so the request is refused and the connection closed.
    #[error("the request has both Content-Length and Transfer-Encoding")]
    AmbiguousFraming,
    #[error("the request's host is ambiguous: {0}")]
    AmbiguousHost(&'static str),
    #[error("no app is served at {0}")]
    UnknownHost(String),
    #[error("CONNECT is not served")]
    MethodNotAllowed,
    #[error("a transfer coding other than chunked")]
    UnsupportedTransferCoding,
    #[error("the request body is malformed: {0}")]
    BadRequestBody(BodyError),
    #[error("the request body was too slow: {0}")]
    RequestTimeout(BodyError),
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    #[error("machine {machine} failed to answer: {error}")]
    Upstream {
        machine: String,
        error: UpstreamError,
    },
    /// A backhaul request without a valid cluster credential.
    #[error("backhaul: {0}")]
    Backhaul(BackhaulError),
    /// A backhaul request for a machine this node does not host (the sender's view is
    /// behind: it moved or was destroyed).
    #[error("machine {0} is not hosted on this node")]
    NotHostedHere(String),
    #[error("cannot replay the request: {0}")]
    Replay(#[from] super::replay::ReplayError),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost
            | ProxyError::AmbiguousHost(_)
            | ProxyError::AmbiguousFraming
            | ProxyError::BadRequestBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Acquire(error) => acquire_status(error),
            ProxyError::Upstream { error, .. } => upstream_status(error),
            ProxyError::Replay(ReplayError::Body(BodyError::TooSlow(_))) => {
                StatusCode::REQUEST_TIMEOUT
            }
            ProxyError::Replay(ReplayError::Body(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Backhaul(_) => StatusCode::FORBIDDEN,
            ProxyError::NotHostedHere(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Replay(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// What the client is told: a few words, nothing of the edge's internals.
    fn public_message(&self) -> &'static str {
        match self {
            ProxyError::MissingHost => "the request names no host",
            ProxyError::AmbiguousHost(_) => "the request names more than one host",
            ProxyError::AmbiguousFraming => "the request's body length is ambiguous",
            ProxyError::UnknownHost(_) => "no app is served at this host",
            ProxyError::MethodNotAllowed => "CONNECT is not served here",
            ProxyError::UnsupportedTransferCoding => "only the chunked transfer coding is served",
            ProxyError::BadRequestBody(_) => "the request body is malformed",
            ProxyError::RequestTimeout(_) => "the request body was sent too slowly",
            ProxyError::Acquire(error) => acquire_message(error),
            ProxyError::Upstream { error, .. } => upstream_message(error),
            ProxyError::Replay(error) => replay_message(error),
            ProxyError::Backhaul(_) => "the request is not from this cluster",
            ProxyError::NotHostedHere(_) => "no machine is available; try again",
        }
    }

    /// When the same request may succeed if simply sent again, in seconds: after a
    /// machine's start back-off, else a moment later.
    fn retry_after(&self) -> Option<u64> {
        if let ProxyError::Acquire(AcquireError::Wake {
            error: WakeError::BackingOff(left),
            ..
        }) = self
        {
            return Some(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        }
        let helps = matches!(
            self.status(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        );
        helps.then_some(RETRY_AFTER_SECS)
    }
}

fn acquire_status(error: &AcquireError) -> StatusCode {
    match error {
        AcquireError::NoMachines { .. }
        | AcquireError::AtHardLimit { .. }
        | AcquireError::Unhealthy { .. }
        | AcquireError::Asleep { .. } => StatusCode::SERVICE_UNAVAILABLE,
        AcquireError::NotHealthy { .. } => StatusCode::GATEWAY_TIMEOUT,
        AcquireError::UnknownInstance { .. } => StatusCode::NOT_FOUND,
        AcquireError::InstanceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        AcquireError::Wake { error, .. } => match error {
            WakeError::Exited(_) | WakeError::StartFailed(_) => StatusCode::BAD_GATEWAY,
            WakeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            WakeError::BackingOff(_) | WakeError::Gone | WakeError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        },
    }
}

fn acquire_message(error: &AcquireError) -> &'static str {
    match error {
        AcquireError::UnknownInstance { .. } => "the requested instance does not exist",
        AcquireError::Wake { error, .. } => match error {
            WakeError::Exited(_) | WakeError::StartFailed(_) => "the app failed to start",
            WakeError::Timeout(_) => "the app did not start in time",
            WakeError::BackingOff(_) => "the app is failing to start; try again later",
            WakeError::Gone | WakeError::ShuttingDown => "no machine is available; try again",
        },
        _ => "no machine is available; try again",
    }
}

/// A replay's failure names no machine or app: what the app's developer needs to see.
fn replay_message(error: &ReplayError) -> &'static str {
    match error {
        ReplayError::TooMany(_) => "more fly-replay hops than allowed",
        ReplayError::BodyNotKept => "the request body was too large to keep for a fly-replay",
        ReplayError::NoApp(_) => "fly-replay names an app not served here",
        ReplayError::NoTarget(_) => "fly-replay names no target",
        ReplayError::Body(BodyError::TooSlow(_)) => "the request body was sent too slowly",
        ReplayError::Body(_) => "the request body is malformed",
    }
}

fn upstream_status(error: &UpstreamError) -> StatusCode {
    match error {
        UpstreamError::Connect(_) | UpstreamError::Exchange(_) => StatusCode::BAD_GATEWAY,
        UpstreamError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::ClientBody(_, ClientFault::TooSlow) => StatusCode::REQUEST_TIMEOUT,
        UpstreamError::ClientBody(_, ClientFault::Malformed) => StatusCode::BAD_REQUEST,
    }
}

fn upstream_message(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Connect(_) => "the app could not be reached",
        UpstreamError::Exchange(_) => "the app did not answer",
        UpstreamError::Busy(_) => "the app is busy; try again",
        UpstreamError::Timeout(_) => "the app did not answer in time",
        UpstreamError::ClientBody(_, ClientFault::TooSlow) => {
            "the request body was sent too slowly"
        }
        UpstreamError::ClientBody(_, ClientFault::Malformed) => "the request body is malformed",
    }
}

/// Logs what the client is not told: the edge's failures (5xx) as warnings, a client's
/// own mistakes only at debug (anyone can send them, as often as they like).
pub fn log(error: &ProxyError, request_id: &str, peer: SocketAddr) {
    let status = error.status().as_u16();
    if error.status().is_server_error() {
        tracing::warn!(request_id, %peer, status, "proxy error: {error}");
    } else {
        tracing::debug!(request_id, %peer, status, "proxy error: {error}");
    }
}

/// 301 to the same host and path on https (`force_https`).
pub fn redirect_to_https(host: &str, uri: &http::Uri) -> Response<ProxyBody> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{path}");
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// A plain-text answer of the edge's own.
pub fn text_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The response the client gets for a proxy error: a few words and the request id.
pub fn error_response(error: &ProxyError, request_id: &str) -> Response<ProxyBody> {
    let text = format!(
        "edgewake: {}\nrequest id: {request_id}\n",
        error.public_message()
    );
    let mut response = text_response(error.status(), text);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(super::headers::FLY_REQUEST_ID, value);
    }
    if let Some(secs) = error.retry_after() {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(error, ProxyError::MethodNotAllowed) {
        headers.insert(http::header::ALLOW, ALLOWED_METHODS);
    }
    if client_body_failed(error) {
        // The rest of the body is not read: the connection cannot carry another request.
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether the client's body failed on the way (its connection is out of step).
fn client_body_failed(error: &ProxyError) -> bool {
    matches!(
        error,
        ProxyError::BadRequestBody(_)
            | ProxyError::RequestTimeout(_)
            | ProxyError::Replay(ReplayError::Body(_))
            | ProxyError::Upstream {
                error: UpstreamError::ClientBody(..),
                ..
            }
    )
}

/// The response, or the error's (logged, and answered short, naming the request).
pub(super) fn answer(
    served: Result<Response<ProxyBody>, ProxyError>,
    peer: SocketAddr,
    request_id: &str,
) -> Response<ProxyBody> {
    served.unwrap_or_else(|error| {
        log(&error, request_id, peer);
        error_response(&error, request_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A machine that dies while starting is a 502 without Retry-After; a slow one a 504 with it.
    #[test]
    fn wake_failures_map_to_gateway_statuses() {
        let exited = ProxyError::from(AcquireError::Wake {
            machine: "m".into(),
            error: WakeError::Exited(crate::drivers::Exit {
                code: Some(3),
                signal: None,
                oom_killed: false,
            }),
        });
        let response = error_response(&exited, "r1");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(response.headers().get("retry-after").is_none());
        let slow = ProxyError::from(AcquireError::Wake {
            machine: "m".into(),
            error: WakeError::Timeout(Duration::from_secs(1)),
        });
        let response = error_response(&slow, "r2");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()["retry-after"], "1");
    }

    /// A machine whose starts are held off is a 503 whose Retry-After is the rest of
    /// the back-off, in whole seconds rounded up.
    #[test]
    fn backing_off_says_when_to_retry() {
        let held = ProxyError::from(AcquireError::Wake {
            machine: "m".into(),
            error: WakeError::BackingOff(Duration::from_millis(3_200)),
        });
        let response = error_response(&held, "r0");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "4");
    }

    /// Unknown hosts are 404; apps without machines are 503 with Retry-After.
    #[test]
    fn routing_failures() {
        assert_eq!(
            error_response(&ProxyError::UnknownHost("x".into()), "r3").status(),
            StatusCode::NOT_FOUND
        );
        let none = error_response(
            &ProxyError::from(AcquireError::NoMachines {
                app: "a".into(),
                port: 80,
            }),
            "r4",
        );
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(none.headers().contains_key("retry-after"));
    }
}
