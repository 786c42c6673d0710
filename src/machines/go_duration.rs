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

/// Fraction digits read in one term; later ones are below a nanosecond even in hours.
const MAX_FRACTION_DIGITS: usize = 20;

/// Parses Go's duration syntax: one or more `<decimal><unit>`, units ns, us, µs, ms, s, m,
/// h. Exact in integers, as Go's own parser: a fraction below a nanosecond is dropped, and
/// a duration beyond `u64` nanoseconds (584 years) is refused.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Text(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = 0u64;
    while !rest.is_empty() {
        let (whole, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => split_digits(after),
            None => ("", after),
        };
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = unit_nanos(&after[..unit_len]).ok_or_else(bad)?;
        let nanos = term_nanos(whole, fraction, unit).ok_or_else(bad)?;
        total = total.checked_add(nanos).ok_or_else(bad)?;
        rest = &after[unit_len..];
    }
    Ok(Duration::from_nanos(total))
}

/// The leading ASCII digits of `text`, and the rest.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    )
}

/// `whole.fraction` units in nanoseconds; `None` without digits or beyond `u64`.
fn term_nanos(whole: &str, fraction: &str, unit: u64) -> Option<u64> {
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole = match whole {
        "" => 0,
        digits => digits.parse::<u64>().ok()?.checked_mul(unit)?,
    };
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let part = match fraction {
        "" => 0,
        // At most 10^20 × 3.6·10^12 < 2^128: no overflow.
        digits => {
            let scale = 10u128.pow(digits.len() as u32);
            let part = digits.parse::<u128>().ok()? * u128::from(unit) / scale;
            u64::try_from(part).ok()?
        }
    };
    whole.checked_add(part)
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
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

    /// Parsing is exact, however long the duration (found by fuzzing: floating point
    /// made `"5629h29m58.326410545s"` a nanosecond short), drops what is below a
    /// nanosecond as Go does, and refuses what exceeds u64 nanoseconds instead of
    /// saturating.
    #[test]
    fn parses_exactly() {
        let nanos = 20_266_198_326_410_545;
        assert_eq!(
            parse("5629h29m58.326410545s").unwrap(),
            Duration::from_nanos(nanos)
        );
        for nanos in [u64::MAX, u64::MAX - 1, 1 << 53 | 1, nanos] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(parse(&format(d)).unwrap(), d, "{nanos}");
        }
        assert_eq!(parse("1.9ns").unwrap(), Duration::from_nanos(1));
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.s").unwrap(), Duration::from_secs(1));
        for bad in [
            ".s",
            "5124096h",
            "99999999999999999999ns",
            "18446744073709551616ns",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
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
