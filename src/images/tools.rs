//! Runs of the external tools: skopeo (copies between registries, archives and the
//! store's layout), umoci (unpack, untag, garbage collection) and tar (reads one file
//! of an archive). Their failures come back as one trimmed line.

use super::ImageError;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

pub const SKOPEO: &str = "skopeo";
pub const UMOCI: &str = "umoci";
pub const TAR: &str = "tar";
/// Longest one tool run may take (a large pull on a slow link); then it is killed.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `tool` with `args`; its stdout, or its trimmed complaint.
pub async fn run(tool: &'static str, args: &[String]) -> Result<Vec<u8>, ImageError> {
    let failed = |message: String| ImageError::Tool { tool, message };
    let child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => failed("not installed (not found in PATH)".into()),
            _ => failed(format!("cannot start: {e}")),
        })?;
    let output = tokio::time::timeout(DEFAULT_TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            failed(format!(
                "still running after {DEFAULT_TOOL_TIMEOUT:?}: killed"
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(failed(
        complaint(&stderr).unwrap_or_else(|| output.status.to_string()),
    ))
}

/// The line that says what went wrong: skopeo's `msg="…"` of its fatal line, umoci's
/// `⨯ …` line, else the last line.
pub fn complaint(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let fatal = lines.iter().rev().find_map(|line| logfmt_message(line));
    let umoci = || {
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix('⨯').map(str::trim))
    };
    fatal
        .or_else(|| umoci().map(str::to_string))
        .or_else(|| lines.last().map(|l| l.to_string()))
}

/// The `msg` of a logrus line (`time=… level=fatal msg="…"`), unquoted.
fn logfmt_message(line: &str) -> Option<String> {
    let quoted = line.split_once(" msg=\"")?.1;
    let quoted = quoted.strip_suffix('"').unwrap_or(quoted);
    Some(quoted.replace("\\\"", "\"").replace("\\\\", "\\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// skopeo's fatal line is reduced to its message, quotes unescaped.
    #[test]
    fn skopeo_fatal_message_is_kept() {
        let stderr = "Getting image source signatures\ntime=\"2026-01-01T00:00:00Z\" level=fatal \
                      msg=\"pinging registry: Get \\\"http://x/v2/\\\": connection refused\"\n";
        assert_eq!(
            complaint(stderr).unwrap(),
            "pinging registry: Get \"http://x/v2/\": connection refused"
        );
    }

    /// umoci's error line loses its cross and indent; progress lines are skipped.
    #[test]
    fn umoci_error_line_is_kept() {
        let stderr = "   • unpacking rootfs ...\n   ⨯ tag is not found: v9\n";
        assert_eq!(complaint(stderr).unwrap(), "tag is not found: v9");
    }

    /// Any other tool's last line is its complaint.
    #[test]
    fn plain_stderr_last_line() {
        assert_eq!(
            complaint("a\ntar: x: Not found in archive\n\n").unwrap(),
            "tar: x: Not found in archive"
        );
        assert_eq!(complaint(""), None);
    }

    /// A missing tool is reported as missing, not as a crash.
    #[tokio::test]
    async fn missing_tool_is_named() {
        let err = run("edgewake-no-such-tool", &[]).await.unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
    }
}
