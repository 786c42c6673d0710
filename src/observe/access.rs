//! The access log: one line per proxied request, written when its response body has
//! gone to the client (so `bytes` and `duration_ms` are whole), on the target
//! `edgewake::access`: request id, app, machine, region, method, path (no query: it may
//! hold secrets), status, bytes, duration, and whether the request waited for a wake.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::time::Duration;
use tokio::time::Instant;

/// The target access lines are written on.
pub const TARGET: &str = "edgewake::access";

/// What the access line says about a request, gathered on its way.
#[derive(Debug, Clone, Default)]
pub struct Line {
    pub request_id: String,
    pub app: String,
    pub machine: String,
    pub region: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// How long it waited for a wake, when it did.
    pub woke: Option<Duration>,
}

impl Line {
    fn write(&self, bytes: u64, took: Duration) {
        tracing::info!(target: TARGET,
            request_id = %self.request_id, app = %self.app, machine = %self.machine,
            region = %self.region, method = %self.method, path = %self.path,
            status = self.status, bytes, duration_ms = took.as_secs_f64() * 1000.0,
            woke = self.woke.is_some(),
            wake_ms = self.woke.map_or(0, |w| w.as_millis() as u64),
            "{} {} {} {}", self.method, self.path, self.status, self.app);
    }
}

/// Counts the body's bytes and writes the line when the body ends or is dropped.
pub fn log_when_done<E: 'static>(
    body: UnsyncBoxBody<Bytes, E>,
    line: Line,
    began: Instant,
) -> UnsyncBoxBody<Bytes, E> {
    let mut counter = Counter {
        line,
        began,
        bytes: 0,
    };
    body.map_frame(move |frame| {
        // The whole counter moves in (not just its field), so it drops with the body.
        let counter = &mut counter;
        if let Some(data) = frame.data_ref() {
            counter.bytes += data.len() as u64;
        }
        frame
    })
    .boxed_unsync()
}

struct Counter {
    line: Line,
    began: Instant,
    bytes: u64,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.line.write(self.bytes, self.began.elapsed());
    }
}
