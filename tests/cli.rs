//! The `edgewake` command line: `check-config` validates and lists every problem.

use std::process::Command;

fn edgewake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgewake"))
        .args(args)
        .output()
        .unwrap()
}

/// The shipped config passes `check-config`.
#[test]
fn shipped_config_checks_ok() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgewake.toml");
    let out = edgewake(&["check-config", "--config", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

/// A config with several mistakes fails with every one of them named, and exit code 1.
#[test]
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[edge]\nregion = \"mars\"\ndomians = [\"x\"]\nworkers = 5000\n[api]\nport = 1\n",
    )
    .unwrap();
    let out = edgewake(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "4 problem(s)",
        "`edge.domians`",
        "`edge.workers` must be at most",
        "`api.port`",
        "`edge.region`: `mars`",
    ] {
        assert!(stderr.contains(needle), "missing {needle} in:\n{stderr}");
    }
}

/// A config file that does not exist is an error naming the path.
#[test]
fn missing_config_is_named() {
    let out = edgewake(&["check-config", "--config", "/nonexistent/edgewake.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/edgewake.toml"));
}
