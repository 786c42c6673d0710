//! The two duration parsers on any text: Go's syntax for the Machines API
//! (`machines::go_duration`: `stop_config.timeout`, check intervals, `wait?timeout=`) and
//! the operator's config (`config::duration`: `idle_timeout = "4s"`).
//!
//! Checked beyond "does not panic": a duration that parses prints back (Go's
//! `Duration.String()`, humantime's format) to text that parses to the same value, and a
//! Go duration reads the same as a JSON string. The first 8 bytes are also read as a
//! number of nanoseconds (how the API may send a duration, which it then keeps as Go's
//! string): that string parses back to the same number.
#![no_main]

use edgewake::config::duration as config_duration;
use edgewake::machines::go_duration;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|bytes: &[u8]| {
    // Any whole number of nanoseconds (the API's other spelling, kept as Go's string).
    if let Some(nanos) = bytes.first_chunk::<8>() {
        let d = Duration::from_nanos(u64::from_le_bytes(*nanos));
        let printed = go_duration::format(d);
        assert_eq!(go_duration::parse(&printed), Ok(d), "{d:?} → {printed:?}");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(d) = go_duration::parse(text) {
        let printed = go_duration::format(d);
        assert_eq!(
            go_duration::parse(&printed),
            Ok(d),
            "{text:?} → {printed:?}"
        );
        let json = serde_json::Value::String(text.to_string());
        assert_eq!(go_duration::from_json(&json), Ok(d));
    }
    if let Ok(d) = config_duration::parse(text) {
        let printed = humantime::format_duration(d).to_string();
        assert_eq!(
            config_duration::parse(&printed),
            Ok(d),
            "{text:?} → {printed:?}"
        );
    }
});
