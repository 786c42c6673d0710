//! Durations as Fly's API writes them: Go duration strings (`"15s"`, `"1m30s"`,
//! `"1.5s"`, `"250ms"`) or integer nanoseconds, read either way and written as strings.

use serde_json::{Number, Value};
use std::time::Duration;

/// Why a value is not a duration; each keeps what was given, to be named back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration like \"15s\", \"1m30s\" or \"250ms\"")]
    Text(String),
    #[error("{0} is not a whole, non-negative number of nanoseconds")]
    Nanos(Number),
    #[error("{0} is not a duration (\"15s\" or nanoseconds)")]
    NotADuration(Value),
}

/// Reads a config duration: a Go duration string or a whole number of nanoseconds.
pub fn from_json(value: &Value) -> Result<Duration, DurationError> {
    match value {
        Value::String(text) => parse(text),
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| DurationError::Nanos(n.clone())),
        other => Err(DurationError::NotADuration(other.clone())),
    }
}

/// Parses Go's duration syntax: one or more `<decimal><unit>`, units ns, us, µs, ms, s, m, h.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Text(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += number * unit_nanos(&rest[..unit_len]).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// Writes a duration as Go's `Duration.String()` does: `"15s"`, `"1m30s"`, `"1h0m0s"`,
/// `"1.5s"`, `"250ms"`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", decimal(n, 1_000)),
        n if n < 1_000_000_000 => format!("{}ms", decimal(n, 1_000_000)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            let s = decimal(n % 60_000_000_000, 1_000_000_000);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// `n / unit` with the fraction written only as far as it is non-zero.
fn decimal(n: u128, unit: u128) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Go's spellings parse, including fractions and compound units.
    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "15", "s", "1x", "-1s", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Integer nanoseconds are read as such; other JSON is refused.
    #[test]
    fn reads_strings_or_nanoseconds() {
        assert_eq!(
            from_json(&json!(15_000_000_000u64)).unwrap(),
            Duration::from_secs(15)
        );
        assert_eq!(from_json(&json!("10s")).unwrap(), Duration::from_secs(10));
        assert!(matches!(
            from_json(&json!(-5)),
            Err(DurationError::Nanos(_))
        ));
        assert_eq!(
            from_json(&json!(true)),
            Err(DurationError::NotADuration(json!(true)))
        );
    }

    /// Formatting matches Go's Duration.String() and round-trips through parse.
    #[test]
    fn formats_like_go() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(15), "15s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(42), "42ns"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text).unwrap(), d);
        }
    }
}
