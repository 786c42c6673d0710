//! What each request tells the client and the operator once it is answered: the wake
//! it waited for (`edgewake-wake: <ms>` and `Server-Timing`, so browsers' devtools show
//! it), its count and duration in the metrics, and its access-log line.

use super::ProxyBody;
use crate::metrics::Metrics;
use crate::observe::access::{self, Line};
use http::{HeaderName, HeaderValue, Response};
use std::time::Duration;
use tokio::time::Instant;

/// Response header: how long the request waited for its machine to wake, in ms.
pub const WAKE_HEADER: HeaderName = HeaderName::from_static(WAKE_HEADER_NAME);
const SERVER_TIMING: HeaderName = HeaderName::from_static(SERVER_TIMING_NAME);
const WAKE_HEADER_NAME: &str = "edgewake-wake";
const SERVER_TIMING_NAME: &str = "server-timing";

/// What the request's path learned, filled in as it goes.
#[derive(Debug, Default)]
pub struct Served {
    pub app: String,
    pub machine: String,
    pub region: String,
    /// Time spent waiting for wakes (summed over replays).
    pub waited: Option<Duration>,
}

impl Served {
    pub fn add_wait(&mut self, waited: Option<Duration>) {
        add_wait(&mut self.waited, waited);
    }
}

/// Adds a wake's wait to a request's (attempts and replays may wait more than once).
pub fn add_wait(total: &mut Option<Duration>, waited: Option<Duration>) {
    if let Some(w) = waited {
        *total = Some(total.unwrap_or_default() + w);
    }
}

/// The request as it came, for the access log (kept only when the log is on).
pub struct Asked {
    pub method: String,
    pub path: String,
}

/// Marks the response, counts it, and logs it when its body is done.
pub fn finish(
    mut response: Response<ProxyBody>,
    served: Served,
    asked: Option<Asked>,
    request_id: &str,
    metrics: &Metrics,
    began: Instant,
) -> Response<ProxyBody> {
    if let Some(waited) = served.waited {
        mark_wake(response.headers_mut(), waited);
    }
    let status = response.status().as_u16();
    metrics.request(&served.app, status, &served.region, began.elapsed());
    if let Some(waited) = served.waited {
        metrics.cold_start(&served.app, waited);
    }
    let Some(asked) = asked else { return response };
    let line = Line {
        request_id: request_id.to_string(),
        app: served.app,
        machine: served.machine,
        region: served.region,
        method: asked.method,
        path: asked.path,
        status,
        woke: served.waited,
    };
    response.map(|body| access::log_when_done(body, line, began))
}

/// `edgewake-wake: 412` and `Server-Timing: wake;dur=412.3;desc="machine wake"`.
fn mark_wake(headers: &mut http::HeaderMap, waited: Duration) {
    let [_, (_, timing)] = wake_fields(waited);
    headers.insert(WAKE_HEADER, HeaderValue::from(waited.as_millis() as u64));
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.append(SERVER_TIMING, value);
    }
}

/// The fields that say how long a request waited for its wake, as text (the fast
/// path writes them into its head).
pub fn wake_fields(waited: Duration) -> [(&'static str, String); 2] {
    // Both truncated (not rounded), so the two say the same whole milliseconds: a
    // rounded 327.96 ms read "328.0" beside `edgewake-wake: 327`.
    let tenths = waited.as_micros() / 100;
    let (ms, tenth) = (tenths / 10, tenths % 10);
    [
        (WAKE_HEADER_NAME, ms.to_string()),
        (
            SERVER_TIMING_NAME,
            format!("wake;dur={ms}.{tenth};desc=\"machine wake\""),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wake header and Server-Timing name the same whole milliseconds, however
    /// close the wait is to the next one.
    #[test]
    fn wake_fields_agree_on_the_milliseconds() {
        let [(_, header), (_, timing)] = wake_fields(Duration::from_micros(327_960));
        assert_eq!(header, "327");
        assert_eq!(timing, "wake;dur=327.9;desc=\"machine wake\"");
        let [(_, header), (_, timing)] = wake_fields(Duration::from_millis(5));
        assert_eq!(
            (header.as_str(), timing.as_str()),
            ("5", "wake;dur=5.0;desc=\"machine wake\"")
        );
    }
}
