//! The OCI runtime (runc) as edgewake drives it, with its state under the data dir, and
//! the per-run pieces around it: the overlay root and the cgroup's OOM count.

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

    /// `exec` of `argv` in the running container, under its limits and profile.
    pub fn exec(&self, id: &str, argv: &[String]) -> Command {
        let mut command = self.command();
        command.arg("exec").arg(id).args(argv);
        command
    }
}

fn quiet(command: &mut Command) -> &mut Command {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
}

/// The machine's root: the image tree read-only below, a fresh writable layer above.
pub struct Overlay {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
}

impl Overlay {
    /// `dir/{upper,work,rootfs}` over `lower`.
    pub fn in_dir(dir: &Path, lower: &Path) -> Overlay {
        Overlay {
            lower: lower.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("rootfs"),
        }
    }

    /// Empties the writable layer (what the last run wrote is gone) and mounts.
    /// `owner` owns the new layer's root (the machine's root user outside its namespace).
    pub fn mount_fresh(&self, owner: Option<u32>) -> std::io::Result<()> {
        unmount(&self.target);
        for dir in [&self.upper, &self.work] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::fs::create_dir_all(dir)?;
            if let Some(id) = owner {
                std::os::unix::fs::chown(dir, Some(id), Some(id))?;
            }
        }
        std::fs::create_dir_all(&self.target)?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &self.target,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(std::io::Error::from)
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
