//! Running a command in a machine for Fly's exec, bounded: its output is capped (a
//! hostile machine controls every binary it has) and, at the timeout or the cap, the
//! command and everything it started are killed, not left running.

use crate::drivers::{DriverError, ExecOutput};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Most bytes of stdout (and of stderr) an exec returns; beyond, the command is killed.
pub const MAX_EXEC_OUTPUT: usize = 1024 * 1024;

/// How a command that overran is ended: given the spawned child's pid.
pub type Kill = Box<dyn FnOnce(u32) + Send>;

/// Runs `command` to its end, or kills it (with `kill`) at `timeout` or when an output
/// passes `MAX_EXEC_OUTPUT`.
pub async fn run(
    mut command: Command,
    timeout: Duration,
    kill: Kill,
) -> Result<ExecOutput, DriverError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| DriverError::Spawn {
        command: format!("{:?}", command.as_std().get_program()),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let collect = async {
        let (out, err) = tokio::join!(capped(stdout), capped(stderr));
        let status = if out.1 || err.1 {
            None
        } else {
            child.wait().await.ok()
        };
        (out, err, status)
    };
    let Ok((out, err, status)) = tokio::time::timeout(timeout, collect).await else {
        kill(pid);
        return Err(DriverError::ExecTimeout(timeout));
    };
    let Some(status) = status else {
        kill(pid);
        let mut output = finish(out.0, err.0, -1, None);
        output.stderr.push_str(&format!(
            "\n[edgewake: output passed {MAX_EXEC_OUTPUT} bytes; the command was killed]\n"
        ));
        return Ok(output);
    };
    Ok(finish(
        out.0,
        err.0,
        status.code().unwrap_or(-1),
        status.signal(),
    ))
}

/// A command that cannot be run answers as a shell would: exit code 127 when it does
/// not exist, 126 when it may not be run. The exec itself worked (Fly answers 200);
/// the caller reads the exit code, as with `sh -c`.
pub fn as_shell_would(program: &str, error: DriverError) -> Result<ExecOutput, DriverError> {
    let DriverError::Spawn { source, .. } = &error else {
        return Err(error);
    };
    let (code, problem) = match source.kind() {
        std::io::ErrorKind::NotFound => (127, "command not found"),
        std::io::ErrorKind::PermissionDenied => (126, "permission denied"),
        _ => return Err(error),
    };
    let stderr = format!("{program}: {problem}\n");
    Ok(finish(Vec::new(), stderr.into_bytes(), code, None))
}

fn finish(
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_code: i32,
    exit_signal: Option<i32>,
) -> ExecOutput {
    ExecOutput {
        exit_code,
        exit_signal,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Reads up to the cap; says whether there was more.
async fn capped(pipe: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    let Some(pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut bytes = Vec::new();
    let limit = MAX_EXEC_OUTPUT as u64 + 1;
    let _ = pipe.take(limit).read_to_end(&mut bytes).await;
    let over = bytes.len() > MAX_EXEC_OUTPUT;
    bytes.truncate(MAX_EXEC_OUTPUT);
    (bytes, over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::shared::procfs;

    /// A command that prints more than the cap is cut and killed; a slow one is killed
    /// at its timeout with its children.
    #[tokio::test]
    async fn caps_output_and_kills_at_the_timeout() {
        let mut loud = Command::new("sh");
        loud.args(["-c", "yes edgewake"]);
        let output = run(loud, Duration::from_secs(20), Box::new(|_| {}))
            .await
            .unwrap();
        assert_eq!(output.stdout.len(), MAX_EXEC_OUTPUT);
        assert!(output.stderr.contains("killed"));

        let mut slow = Command::new("sh");
        slow.args(["-c", "sleep 300 & sleep 301"]);
        slow.process_group(0);
        let group = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = group.clone();
        let kill: Kill = Box::new(move |pid| {
            seen.store(pid, std::sync::atomic::Ordering::SeqCst);
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        });
        let error = run(slow, Duration::from_millis(300), kill)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
        let pid = group.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            procfs::descendants(1)
                .iter()
                .all(|p| group_of(*p) != Some(pid)),
            "the background sleep lives on"
        );
    }

    /// A command that does not exist exits 127, as in a shell; one that may not run, 126.
    #[tokio::test]
    async fn unrunnable_commands_answer_as_a_shell() {
        let missing = run(
            Command::new("edgewake-no-such-command"),
            Duration::from_secs(5),
            Box::new(|_| {}),
        )
        .await
        .unwrap_err();
        let output = as_shell_would("edgewake-no-such-command", missing).unwrap();
        assert_eq!(output.exit_code, 127);
        assert!(output.stderr.contains("not found"), "{}", output.stderr);
        let dir = tempfile::tempdir().unwrap();
        let denied = run(
            Command::new(dir.path()),
            Duration::from_secs(5),
            Box::new(|_| {}),
        )
        .await
        .unwrap_err();
        let output = as_shell_would("dir", denied).unwrap();
        assert_eq!(output.exit_code, 126);
        let timeout = DriverError::ExecTimeout(Duration::from_secs(1));
        assert!(as_shell_would("x", timeout).is_err());
    }

    fn group_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        let state = after.split_whitespace().next()?;
        (state != "Z")
            .then(|| after.split_whitespace().nth(2)?.parse().ok())
            .flatten()
    }
}
