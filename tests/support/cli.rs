//! The `edgewake` command line in tests: a command that nothing in the test runner's
//! environment points elsewhere, and what a run printed.

use super::{TOKEN, TestEdge};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// Variables that would point the CLI at another API, token, config or app.
const POINTERS: [&str; 7] = [
    "EDGEWAKE_CONFIG",
    "EDGEWAKE_API_URL",
    "EDGEWAKE_API_TOKEN",
    "FLY_API_HOSTNAME",
    "FLY_API_TOKEN",
    "FLY_APP",
    "RUST_LOG",
];

/// `edgewake ARGS` run in `cwd`, with none of those variables.
pub fn edgewake(cwd: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_edgewake"));
    command.args(args).current_dir(cwd);
    for key in POINTERS {
        command.env_remove(key);
    }
    command
}

/// What a CLI run printed and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert!(self.succeeded(), "failed: {}", self.stderr);
        self.stdout
    }

    /// Asserts success and returns stdout read as JSON.
    pub fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

impl TestEdge {
    /// `edgewake ARGS`, pointed at this edge through Fly's variables.
    pub fn cli_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = edgewake(&std::env::temp_dir(), args);
        command
            .env("FLY_API_HOSTNAME", self.running.api_addr.to_string())
            .env("FLY_API_TOKEN", TOKEN);
        command.into()
    }

    /// Runs `edgewake ARGS` against this edge.
    pub async fn cli(&self, args: &[&str]) -> Run {
        Run::of(self.cli_command(args).output().await.unwrap())
    }
}
