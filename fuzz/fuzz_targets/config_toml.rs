//! The config loader (`Config::parse`: TOML text → typed, validated config) on any text
//! an operator could write.
//!
//! Checked beyond "does not panic":
//! - a refused config names at least one problem, none of them empty;
//! - a config that loads can be served: each of its durations can be added to the clock
//!   (`Instant::now() + timeout` is how deadlines are made) and its connection limit fits
//!   the semaphore that enforces it.
#![no_main]

use edgewake::config::Config;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => check_usable(&config),
        Err(errors) => {
            assert!(!errors.problems().is_empty(), "refused without a reason");
            assert!(errors.problems().iter().all(|p| !p.trim().is_empty()));
        }
    }
});

fn check_usable(config: &Config) {
    let now = Instant::now();
    for (key, duration) in durations(config) {
        assert!(
            now.checked_add(duration).is_some(),
            "`{key}` = {duration:?} loads but overflows a deadline"
        );
    }
    assert!(
        config.edge.max_connections <= Semaphore::MAX_PERMITS,
        "edge.max_connections = {} loads but no semaphore holds it",
        config.edge.max_connections
    );
}

fn durations(config: &Config) -> [(&'static str, Duration); 11] {
    let edge = &config.edge;
    [
        ("edge.idle_timeout", edge.idle_timeout),
        ("edge.wake_timeout", edge.wake_timeout),
        ("edge.probe_interval", edge.probe_interval),
        ("edge.reap_interval", edge.reap_interval),
        ("edge.drain_timeout", edge.drain_timeout),
        ("edge.header_read_timeout", edge.header_read_timeout),
        ("edge.keepalive_timeout", edge.keepalive_timeout),
        ("edge.queue_timeout", edge.queue_timeout),
        ("tls.handshake_timeout", config.tls.handshake_timeout),
        ("machines.stop_timeout", config.machines.stop_timeout),
        ("wake.keep_awake_max", config.wake.keep_awake_max),
    ]
}
