//! Durations written the way operators write them: `"4s"`, `"250ms"`, `"1m30s"`.

use std::time::Duration;

/// The longest duration a config may give, a hundred of humantime's years (365.25 days
/// each): anything longer is a slip of the keyboard, and far longer ones (humantime reads
/// up to 584 billion years) overflow the deadlines the edge makes from them
/// (`Instant::now() + timeout` panics).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a human duration such as `"4s"` or `"1m30s"`, up to `MAX_DURATION`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"4s\" or \"250ms\": {e}"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is longer than 100 years"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's idle timeout and sub-second values parse.
    #[test]
    fn parses_seconds_and_millis() {
        assert_eq!(parse("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
    }

    /// A duration too long to make a deadline of is refused (found by fuzz/config_toml's
    /// check, on a hand-made input: `queue_timeout = "500000000000years"` loaded, and the
    /// first queued request would have panicked adding it to the clock).
    #[test]
    fn rejects_durations_beyond_a_century() {
        assert_eq!(parse("100years").unwrap(), MAX_DURATION);
        assert!(parse("100years 1s").is_err());
        let err = parse("500000000000years").unwrap_err();
        assert!(err.contains("longer than 100 years"), "{err}");
    }

    /// A bare number has no unit and is rejected with the offending text.
    #[test]
    fn rejects_missing_unit() {
        let err = parse("4").unwrap_err();
        assert!(err.contains("`4`"), "{err}");
    }
}
