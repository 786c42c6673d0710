//! Phase 6, respond: every proxy error becomes one status with a short body, and
//! `Retry-After` where trying again can help.

use super::ProxyBody;
use super::upstream::UpstreamError;
use crate::cluster::BackhaulError;
use crate::lifecycle::{AcquireError, WakeError};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Seconds a client should wait before retrying a request that found no machine ready
/// (unless its machine's starts are held off for longer).
const RETRY_AFTER_SECS: u64 = 1;

/// Why the proxy could not forward a request, and which side it was on.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request names no host")]
    MissingHost,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3): a machine might read
    /// the body's end elsewhere, so the request is refused and the connection closed.
    #[error("the request has both Content-Length and Transfer-Encoding")]
    AmbiguousFraming,
    #[error("no app is served at {0}")]
    UnknownHost(String),
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
            ProxyError::MissingHost | ProxyError::AmbiguousFraming => StatusCode::BAD_REQUEST,
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::Acquire(error) => acquire_status(error),
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Backhaul(_) => StatusCode::FORBIDDEN,
            ProxyError::NotHostedHere(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Replay(super::replay::ReplayError::Body(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Replay(_) => StatusCode::BAD_GATEWAY,
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

/// The response the client gets for a proxy error.
pub fn error_response(error: &ProxyError) -> Response<ProxyBody> {
    let mut response = text_response(error.status(), format!("edgewake: {error}\n"));
    let headers = response.headers_mut();
    if let Some(secs) = error.retry_after() {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The response, or the error's, naming the request.
pub(super) fn answer(
    served: Result<Response<ProxyBody>, ProxyError>,
    peer: std::net::SocketAddr,
    request_id: &str,
) -> Response<ProxyBody> {
    served.unwrap_or_else(|error| {
        tracing::debug!(%peer, "proxy error: {error}");
        let mut response = error_response(&error);
        if let Ok(value) = request_id.parse() {
            response
                .headers_mut()
                .insert(super::headers::FLY_REQUEST_ID, value);
        }
        response
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
        let response = error_response(&exited);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(response.headers().get("retry-after").is_none());
        let slow = ProxyError::from(AcquireError::Wake {
            machine: "m".into(),
            error: WakeError::Timeout(Duration::from_secs(1)),
        });
        let response = error_response(&slow);
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
        let response = error_response(&held);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "4");
    }

    /// Unknown hosts are 404; apps without machines are 503 with Retry-After.
    #[test]
    fn routing_failures() {
        assert_eq!(
            error_response(&ProxyError::UnknownHost("x".into())).status(),
            StatusCode::NOT_FOUND
        );
        let none = error_response(&ProxyError::from(AcquireError::NoMachines {
            app: "a".into(),
            port: 80,
        }));
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(none.headers().contains_key("retry-after"));
    }
}
