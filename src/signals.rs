//! Signals named in config and in Fly's API (`SIGTERM`, `TERM`, `sigint`, `15`).

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Reads a signal name (`SIGTERM`, `TERM`, `sigint`) or number (`15`).
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("`{text}` is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("`{text}` is not a signal name like SIGTERM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals are read by name in any case, with or without SIG, or by number.
    #[test]
    fn parses_signal_spellings() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
