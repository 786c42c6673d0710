//! The `process` driver: an image reference resolves, through the catalog in config, to a
//! command run on the machine's own loopback address. Not a security boundary: the
//! command runs as edgewake's user, with edgewake's view of the filesystem.

use super::shared::log::MachineLog;
use super::shared::{exec, fly_env, procfs, remove_machine_dir, sockets};
use super::{Driver, DriverError, ExecOutput, Exit, Instance, Launch};
use crate::config::ImageConfig;
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long the processes of a crashed edgewake's run may take to be gone after
/// SIGKILL before the machine is started anyway.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Environment passed through from edgewake to every machine; everything else is set.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "TZ"];

pub struct ProcessDriver {
    machines_dir: PathBuf,
    bin_dir: PathBuf,
    catalog: BTreeMap<String, ImageConfig>,
}

impl ProcessDriver {
    /// `data_dir/machines/<id>` holds each machine's scratch directory and log.
    pub fn new(data_dir: &Path, catalog: BTreeMap<String, ImageConfig>) -> ProcessDriver {
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        ProcessDriver {
            machines_dir: data_dir.join("machines"),
            bin_dir,
            catalog,
        }
    }

    /// Overrides where `{bin_dir}` points (tests run from a test binary's directory).
    pub fn with_bin_dir(mut self, bin_dir: PathBuf) -> ProcessDriver {
        self.bin_dir = bin_dir;
        self
    }

    /// Catalog entry for an image: exact name first, then without tag or Docker Hub prefix.
    fn resolve(&self, image: &str) -> Option<&ImageConfig> {
        let untagged = match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => image,
        };
        let unhosted = ["docker.io/", "registry-1.docker.io/", "index.docker.io/"]
            .iter()
            .find_map(|prefix| untagged.strip_prefix(prefix))
            .unwrap_or(untagged);
        [image, untagged, unhosted]
            .iter()
            .find_map(|name| self.catalog.get(*name))
    }

    fn command(&self, image: &ImageConfig, launch: &Launch, scratch: &Path) -> Command {
        let bin_dir = self.bin_dir.to_string_lossy();
        let argv: Vec<String> = image
            .command
            .iter()
            .map(|a| a.replace("{bin_dir}", &bin_dir))
            .collect();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .current_dir(scratch)
            .envs(inherited_env());
        command
            .envs(&image.env)
            .envs(&launch.env)
            .envs(machine_env(launch, scratch));
        command
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        command
    }
}

fn inherited_env() -> impl Iterator<Item = (&'static str, String)> {
    INHERITED_ENV
        .iter()
        .filter_map(|key| Some((*key, std::env::var(key).ok()?)))
}

/// What a process machine is told about itself: Fly's names, and its scratch dir as HOME.
fn machine_env(launch: &Launch, scratch: &Path) -> Vec<(&'static str, String)> {
    let mut env = fly_env(launch);
    env.push(("HOME", scratch.to_string_lossy().into_owned()));
    env
}

/// A fresh, empty scratch directory: a start never sees the last run's files.
fn fresh_scratch(machine_dir: &Path) -> std::io::Result<PathBuf> {
    let scratch = machine_dir.join("scratch");
    match std::fs::remove_dir_all(&scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&scratch)?;
    Ok(scratch)
}

/// Publishes the child's exit on a watch channel, so stop and the exit watcher both see
/// it. When the leader exits, the rest of its process group goes too: a wrapper script
/// that dies must not leave its server behind, answering probes for a stopped machine.
fn watch_exit(mut child: Child) -> watch::Receiver<Option<Exit>> {
    let (tx, rx) = watch::channel(None);
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    tokio::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => Exit {
                code: status.code(),
                signal: status.signal(),
                oom_killed: false,
            },
            Err(_) => Exit::UNKNOWN,
        };
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = tx.send(Some(exit));
    });
    rx
}

#[async_trait]
impl Driver for ProcessDriver {
    async fn check_image(&self, image: &str) -> Result<(), DriverError> {
        self.resolve(image)
            .map(|_| ())
            .ok_or_else(|| DriverError::UnknownImage(image.into()))
    }

    async fn start(&self, launch: Launch) -> Result<Instance, DriverError> {
        let image = self
            .resolve(&launch.image)
            .ok_or_else(|| DriverError::UnknownImage(launch.image.clone()))?;
        let machine_dir = self.machines_dir.join(&launch.machine_id);
        let scratch = fresh_scratch(&machine_dir).map_err(DriverError::Files)?;
        let log = MachineLog::open(&machine_dir.join("machine.log")).map_err(DriverError::Files)?;
        let mut command = self.command(image, &launch, &scratch);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| DriverError::Spawn {
            command: image.command.join(" "),
            source,
        })?;
        log.pump(child.stdout.take().expect("piped"));
        log.pump(child.stderr.take().expect("piped"));
        let pid = child.id().unwrap_or_default();
        Ok(Instance::new(pid, watch_exit(child)))
    }

    /// The machine listens at `addr` itself: a socket there held by its process tree
    /// (another edgewake's machine, or anything else, may answer at a loopback address).
    async fn accepts(&self, instance: &Instance, addr: std::net::SocketAddr) -> bool {
        sockets::machine_accepts(instance, addr).await
    }

    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit {
        if let Some(exit) = instance.exit_status() {
            return exit;
        }
        let group = Pid::from_raw(instance.pid as i32);
        let _ = killpg(group, signal);
        if let Ok(exit) = tokio::time::timeout(timeout, instance.exited()).await {
            let _ = killpg(group, Signal::SIGKILL); // children that ignored the signal
            return exit;
        }
        let _ = killpg(group, Signal::SIGKILL);
        instance.exited().await
    }

    fn signal(&self, instance: &Instance, signal: Signal) {
        if instance.exit_status().is_none() {
            let _ = killpg(Pid::from_raw(instance.pid as i32), signal);
        }
    }

    async fn reap_orphan(&self, machine_id: &str, pid: u32) {
        // The leader may be gone while its children live on: look for every process
        // that runs as this machine, not only the recorded pid.
        let mark = format!("FLY_MACHINE_ID={machine_id}");
        let orphans = procfs::with_env(&mark);
        for orphan in &orphans {
            tracing::warn!(
                machine = machine_id,
                pid = orphan,
                leader = pid,
                "killing a process left by an earlier edgewake"
            );
            let _ = nix::sys::signal::kill(Pid::from_raw(*orphan as i32), Signal::SIGKILL);
        }
        if !orphans.is_empty() && !procfs::until_none_with_env(&mark, ORPHAN_GRACE).await {
            tracing::error!(
                machine = machine_id,
                "processes of an earlier run outlived SIGKILL by {ORPHAN_GRACE:?}"
            );
        }
    }

    async fn forget(&self, machine_id: &str) {
        remove_machine_dir(&self.machines_dir, machine_id).await;
    }

    fn log_path(&self, machine_id: &str) -> Option<PathBuf> {
        Some(self.machines_dir.join(machine_id).join("machine.log"))
    }

    async fn exec(
        &self,
        launch: &Launch,
        _instance: &Instance,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let scratch = self.machines_dir.join(&launch.machine_id).join("scratch");
        let (program, args) = command.split_first().ok_or(DriverError::ExecNeedsCommand)?;
        let mut child = Command::new(program);
        child
            .args(args)
            .env_clear()
            .envs(inherited_env())
            .envs(&launch.env)
            .envs(machine_env(launch, &scratch))
            .current_dir(&scratch);
        child.process_group(0);
        let kill: exec::Kill = Box::new(|pid| {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        });
        let output = exec::run(child, timeout, kill).await;
        output.or_else(|e| exec::as_shell_would(program, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reaping a crashed edgewake's run kills every process of the machine (a wrapper
    /// and its child) and returns only once none is left.
    #[tokio::test]
    async fn reap_orphan_returns_once_it_is_gone() {
        let id = format!("orphan{}", std::process::id());
        let mut orphan = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 31"])
            .env("FLY_MACHINE_ID", &id)
            .spawn()
            .unwrap();
        let mark = format!("FLY_MACHINE_ID={id}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while procfs::with_env(&mark).len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the run never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let dir = tempfile::tempdir().unwrap();
        let driver = ProcessDriver::new(dir.path(), BTreeMap::new());
        driver.reap_orphan(&id, orphan.id()).await;
        assert!(
            procfs::with_env(&mark).is_empty(),
            "no process of the run is left"
        );
        let _ = orphan.wait();
    }
}
