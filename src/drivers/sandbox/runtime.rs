//! The OCI runtime (runc) as edgewake drives it, with its state under the data dir, and
//! the per-run pieces around it: the overlay root and the cgroup's OOM count.

use crate::drivers::ExecOutput;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// runc, with its own state directory (so `runc list` of the host is not ours).
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: PathBuf,
    root: PathBuf,
}

impl Runtime {
    pub fn new(binary: PathBuf, root: PathBuf) -> Runtime {
        Runtime { binary, root }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        command
    }

    fn blocking(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        command
    }

    /// Whether the runtime still keeps a container of this id (a kept or crashed run).
    pub fn has_container(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// `run --keep`: runs in the foreground, as edgewake's child, and keeps the container
    /// (and its cgroup) after it exits, so the OOM count can be read before `delete`.
    pub fn run(&self, id: &str, bundle: &Path) -> Command {
        let mut command = self.command();
        command
            .args(["run", "--keep", "--bundle"])
            .arg(bundle)
            .arg(id);
        command
    }

    /// Sends `signal` to the container's first process, or with `all` to every process.
    pub async fn kill(&self, id: &str, signal: Signal, all: bool) {
        let mut command = self.command();
        command.arg("kill");
        if all {
            command.arg("--all");
        }
        command.arg(id).arg(signal.as_str());
        let _ = quiet(&mut command).status().await;
    }

    pub async fn delete(&self, id: &str) {
        let _ = quiet(self.command().args(["delete", "--force", id]))
            .status()
            .await;
    }

    /// Kills and deletes a container without a runtime (recovery at boot).
    pub fn remove_blocking(&self, id: &str) {
        for args in [
            vec!["kill", "--all", id, "KILL"],
            vec!["delete", "--force", id],
        ] {
            let _ = self
                .blocking()
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// `exec` of `argv` in the running container, under its limits and profile, with
    /// `env` (`KEY=VALUE`) added; runc writes the command's pid (as the host sees it) to
    /// `pid_file`.
    pub fn exec(&self, id: &str, pid_file: &Path, env: &str, argv: &[String]) -> Command {
        let mut command = self.command();
        command
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .args(["--env", env])
            .arg(id)
            .args(argv);
        command
    }

    /// The host pid of the container's first process, as runc knows it.
    pub fn init_pid(&self, id: &str) -> Option<u32> {
        let output = self.blocking().args(["state", id]).output().ok()?;
        let state: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        state["pid"]
            .as_u64()
            .map(|pid| pid as u32)
            .filter(|pid| *pid > 0)
    }
}

/// runc's own exit code when it could not start the command (its error on stderr).
const RUNC_EXEC_FAILED: i32 = 255;

/// An exec as a shell would answer it: when runc could not start the command because it
/// does not exist (127) or may not be run (126), that is the command's exit code, as for
/// `sh -c`; the call itself worked (Fly answers 200).
pub fn exec_answer(mut output: ExecOutput) -> ExecOutput {
    let started = !output.stderr.contains("unable to start container process");
    if output.exit_code != RUNC_EXEC_FAILED || started {
        return output;
    }
    if output.stderr.contains("no such file or directory")
        || output.stderr.contains("executable file not found")
    {
        output.exit_code = 127;
    } else if output.stderr.contains("permission denied") {
        output.exit_code = 126;
    }
    output
}

fn quiet(command: &mut Command) -> &mut Command {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
}

/// The machine's root: the image tree read-only below, a fresh writable layer above.
/// The layer lives in its own size-limited tmpfs (`layer/`, root's alone): a machine
/// cannot fill the host's disk, what it wrote is gone when the tmpfs is unmounted, and
/// no host user reaches the files it made (setuid or not).
pub struct Overlay {
    pub lower: PathBuf,
    pub layer: PathBuf,
    pub target: PathBuf,
}

impl Overlay {
    /// `dir/{layer,rootfs}` over `lower`.
    pub fn in_dir(dir: &Path, lower: &Path) -> Overlay {
        Overlay {
            lower: lower.to_path_buf(),
            layer: dir.join("layer"),
            target: dir.join("rootfs"),
        }
    }

    /// Mounts a new, empty layer of `size_mb` and the root over it. `owner` owns the
    /// layer's top (the machine's root user outside its namespace).
    pub fn mount_fresh(&self, owner: Option<u32>, size_mb: u64) -> std::io::Result<()> {
        self.unmount();
        for dir in [&self.layer, &self.target] {
            std::fs::create_dir_all(dir)?;
        }
        let private = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
        // Inodes bounded too (tmpfs would allow half of RAM's pages): 256 per MB.
        let size = format!("size={size_mb}m,nr_inodes={},mode=0700", size_mb * 256);
        nix::mount::mount(
            Some("tmpfs"),
            &self.layer,
            Some("tmpfs"),
            private,
            Some(size.as_str()),
        )?;
        let (upper, work) = (self.layer.join("upper"), self.layer.join("work"));
        for dir in [&upper, &work] {
            std::fs::create_dir(dir)?;
            if let Some(id) = owner {
                std::os::unix::fs::chown(dir, Some(id), Some(id))?;
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            upper.display(),
            work.display()
        );
        let mounted = nix::mount::mount(
            Some("overlay"),
            &self.target,
            Some("overlay"),
            private,
            Some(options.as_str()),
        );
        if let Err(e) = mounted {
            self.unmount();
            return Err(e.into());
        }
        Ok(())
    }

    /// Unmounts the root and drops the layer (nothing happens where nothing is mounted).
    pub fn unmount(&self) {
        unmount(&self.target);
        unmount(&self.layer);
    }

    /// Unmounts the root and layer of the machine whose directory is `dir`.
    pub fn unmount_in(dir: &Path) {
        Overlay::in_dir(dir, Path::new("")).unmount();
    }
}

/// Detaches whatever is mounted at `target` (nothing when nothing is).
pub fn unmount(target: &Path) {
    let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
}

/// How many processes the kernel OOM-killed in the machine's cgroup (v1 or v2).
pub fn oom_kills(machine_id: &str) -> u64 {
    let v1 = format!("/sys/fs/cgroup/memory/edgewake/{machine_id}/memory.oom_control");
    let v2 = format!("/sys/fs/cgroup/edgewake/{machine_id}/memory.events");
    [v1, v2]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}
