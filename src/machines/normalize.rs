//! A machine config is kept as the client sent it (unknown fields round-trip), except
//! for the few fields Fly's API itself answers in a canonical form; those are rewritten
//! once, when the config is accepted, so every later read shows what Fly would:
//!
//! - `services[].autostop`: `"off"`/`"stop"` become `false`/`true`; `"suspend"` stays.
//! - durations (`stop_config.timeout`, `interval`/`timeout`/`grace_period` of checks in
//!   `services[].checks[]` and `checks{}`): integer nanoseconds or Go strings become Go
//!   strings (`15000000000` → `"15s"`).

use super::go_duration::{self, DurationError};
use serde_json::Value;

/// A duration in the config that does not parse, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {source}")]
pub struct BadDuration {
    /// Where the duration is, as a client would write it (`config.stop_config.timeout`).
    pub path: String,
    pub source: DurationError,
}

/// Fields of a check that hold durations.
const CHECK_DURATIONS: [&str; 3] = ["interval", "timeout", "grace_period"];

/// Rewrites the canonical fields in place; a duration that does not parse is an error
/// naming its path.
pub fn normalize(config: &mut Value) -> Result<(), BadDuration> {
    if let Some(timeout) = config.pointer_mut("/stop_config/timeout") {
        duration(timeout, "config.stop_config.timeout")?;
    }
    if let Some(services) = config.get_mut("services").and_then(Value::as_array_mut) {
        for (i, service) in services.iter_mut().enumerate() {
            autostop(service);
            checks_in_list(service.get_mut("checks"), &format!("config.services[{i}]"))?;
        }
    }
    if let Some(checks) = config.get_mut("checks").and_then(Value::as_object_mut) {
        for (name, check) in checks.iter_mut() {
            check_durations(check, &format!("config.checks.{name}"))?;
        }
    }
    Ok(())
}

fn autostop(service: &mut Value) {
    if let Some(value) = service.get_mut("autostop") {
        match value.as_str() {
            Some("off") => *value = Value::Bool(false),
            Some("stop") => *value = Value::Bool(true),
            _ => {}
        }
    }
}

fn checks_in_list(checks: Option<&mut Value>, path: &str) -> Result<(), BadDuration> {
    let Some(checks) = checks.and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, check) in checks.iter_mut().enumerate() {
        check_durations(check, &format!("{path}.checks[{i}]"))?;
    }
    Ok(())
}

fn check_durations(check: &mut Value, path: &str) -> Result<(), BadDuration> {
    for field in CHECK_DURATIONS {
        if let Some(value) = check.get_mut(field) {
            duration(value, &format!("{path}.{field}"))?;
        }
    }
    Ok(())
}

fn duration(value: &mut Value, path: &str) -> Result<(), BadDuration> {
    if value.is_null() {
        return Ok(());
    }
    let parsed = go_duration::from_json(value).map_err(|source| BadDuration {
        path: path.to_string(),
        source,
    })?;
    *value = Value::String(go_duration::format(parsed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// autostop answers as Fly does: booleans for off/stop, the string for suspend.
    #[test]
    fn autostop_becomes_fly_canonical() {
        let mut config = json!({"services": [
            {"autostop": "off"}, {"autostop": "stop"}, {"autostop": "suspend"}, {"autostop": true}
        ]});
        normalize(&mut config).unwrap();
        let got: Vec<&Value> = (0..4).map(|i| &config["services"][i]["autostop"]).collect();
        assert_eq!(
            got,
            [&json!(false), &json!(true), &json!("suspend"), &json!(true)]
        );
    }

    /// Nanoseconds and Go strings both come out as Go strings; unknown fields are untouched.
    #[test]
    fn durations_become_go_strings() {
        let mut config = json!({
            "stop_config": {"timeout": 15_000_000_000u64, "signal": "SIGINT"},
            "services": [{"checks": [{"interval": "15s", "timeout": 2_000_000_000u64}]}],
            "checks": {"alive": {"grace_period": "1m30s", "path": "/"}},
            "x_unknown": {"timeout": 5}
        });
        normalize(&mut config).unwrap();
        assert_eq!(config["stop_config"]["timeout"], "15s");
        assert_eq!(config["stop_config"]["signal"], "SIGINT");
        assert_eq!(config["services"][0]["checks"][0]["interval"], "15s");
        assert_eq!(config["services"][0]["checks"][0]["timeout"], "2s");
        assert_eq!(config["checks"]["alive"]["grace_period"], "1m30s");
        assert_eq!(config["x_unknown"]["timeout"], 5);
    }

    /// A duration that does not parse is refused with its path.
    #[test]
    fn bad_duration_names_its_path() {
        let mut config = json!({"stop_config": {"timeout": "soon"}});
        let err = normalize(&mut config).unwrap_err();
        assert_eq!(err.path, "config.stop_config.timeout");
        assert_eq!(err.source, DurationError::Text("soon".into()));
    }
}
