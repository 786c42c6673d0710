//! Durations written the way operators write them: `"4s"`, `"250ms"`, `"1m30s"`.

use std::time::Duration;

/// The longest duration a config may give, a hundred of humantime's years (365.25 days
/// each): anything longer is a slip of the keyboard, and far longer ones (humantime reads
/// up to 584 billion years) overflow the deadlines the edge makes from them
/// (`Instant::now() + timeout` panics).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// The longest text read as a duration, and the most significant digits one number in
/// it may have. humantime panics (`Duration::new` overflows) when its running total nears
/// u64::MAX seconds; within these bounds the total stays below a third of that (at most
/// 23 terms of under 10^10 years each), and every real duration fits them easily.
const MAX_TEXT: usize = 256;
const MAX_DIGITS: usize = 10;

/// Parses a human duration such as `"4s"` or `"1m30s"`, up to `MAX_DURATION`.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.len() > MAX_TEXT {
        return Err(format!("`{text}` is too long to be a duration"));
    }
    let too_big = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|digits| digits.trim_start_matches('0').len() > MAX_DIGITS);
    if too_big {
        return Err(format!("`{text}` is longer than 100 years"));
    }
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

    /// Numbers whose sum overflows humantime's running total are refused, not a panic
    /// (found by fuzz/duration: `18446744073709551615s1000ms…` panicked in
    /// `Duration::new`); leading zeros do not count, and over-long text is refused.
    #[test]
    fn refuses_totals_that_would_overflow() {
        let err = parse("18446744073709551615s1000ms").unwrap_err();
        assert!(err.contains("longer than 100 years"), "{err}");
        assert_eq!(parse("0000000000004s").unwrap(), Duration::from_secs(4));
        assert!(parse(&"1s".repeat(200)).is_err());
    }

    /// A bare number has no unit and is rejected with the offending text.
    #[test]
    fn rejects_missing_unit() {
        let err = parse("4").unwrap_err();
        assert!(err.contains("`4`"), "{err}");
    }
}
