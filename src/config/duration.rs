//! Durations written the way operators write them: `"4s"`, `"250ms"`, `"1m30s"`.

use std::time::Duration;

/// Parses a human duration such as `"4s"` or `"1m30s"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"4s\" or \"250ms\": {e}"))
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

    /// A bare number has no unit and is rejected with the offending text.
    #[test]
    fn rejects_missing_unit() {
        let err = parse("4").unwrap_err();
        assert!(err.contains("`4`"), "{err}");
    }
}
