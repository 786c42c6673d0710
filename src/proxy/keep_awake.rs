//! The busy signal in a machine's answer: `edgewake-keep-awake: <duration>` (Go's
//! form: `30s`, `5m`) keeps the machine from an idle stop that long. The header is the
//! machine's word to the edge, so the client never sees it.

use crate::lifecycle::Supervisor;
use crate::machines::Machine;
use crate::machines::go_duration;
use http::{HeaderMap, HeaderName};
use std::time::Duration;

pub const KEEP_AWAKE_HEADER: HeaderName = HeaderName::from_static("edgewake-keep-awake");

/// Takes the header out of the machine's answer and applies it (at most `max`).
pub fn take(sup: &Supervisor, machine: &Machine, headers: &mut HeaderMap, max: Duration) {
    let Some(value) = headers.remove(KEEP_AWAKE_HEADER) else {
        return;
    };
    match value.to_str().ok().map(|v| go_duration::parse(v.trim())) {
        Some(Ok(period)) => sup.keep_awake(machine, period.min(max), "header"),
        _ => {
            tracing::debug!(machine = %machine.id, "ignored a keep-awake header that is not a duration")
        }
    }
}
