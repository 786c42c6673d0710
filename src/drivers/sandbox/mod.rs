//! The `sandbox` driver: machines run OCI images under an OCI runtime (runc), each run
//! in its own pid, mount, ipc, uts, cgroup, network and (where allowed) user namespace,
//! on a fresh writable layer over the read-only image, with cgroup limits from `guest`,
//! dropped capabilities, no new privileges and a seccomp profile.
//!
//! `bundle` writes the runtime spec, `network` the machine's link and firewall,
//! `runtime` drives runc and the overlay, `preflight` checks the host, `seccomp` holds
//! the profile.

pub mod bundle;
pub mod network;
pub mod preflight;
pub mod runtime;
pub mod seccomp;

use crate::config::SandboxConfig;
use crate::drivers::shared::log::MachineLog;
use crate::drivers::shared::{exec, procfs, remove_machine_dir, sockets};
use crate::drivers::{Driver, DriverError, ExecOutput, Exit, Instance, Launch};
use crate::files::dir_with_mode;
use crate::images::{IdMap, Image, ImageStore};
use async_trait::async_trait;
use bundle::RunSpec;
use dashmap::DashMap;
use network::Link;
use nix::sys::signal::Signal;
use runtime::{Overlay, Runtime};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a killed container may take to be reported gone before a stop gives up.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Why the sandbox driver cannot start on this host.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Host(#[from] preflight::Unfit),
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} (mode {mode:o}) does not let others through: machines in user namespaces \
         cannot mount their roots below it (chmod o+x it, or move data_dir)",
        dir.display()
    )]
    Closed { dir: PathBuf, mode: u32 },
    #[error(transparent)]
    Network(#[from] network::NetworkError),
}

impl SetupError {
    fn dir(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
        move |source| SetupError::Dir {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub struct SandboxDriver {
    images: Arc<ImageStore>,
    runtime: Runtime,
    plan: RunPlan,
    /// The machines' range (CIDR), as configured.
    network: String,
    /// Running containers by the pid of their `runc run`.
    containers: Arc<DashMap<u32, String>>,
}

/// What every run is made with: paths, limits and the link settings (cheap to clone
/// into the blocking task that prepares a run).
#[derive(Clone)]
struct RunPlan {
    machines_dir: PathBuf,
    gateway: std::net::Ipv4Addr,
    egress: bool,
    pids_limit: u32,
    rootfs_size_mb: u64,
    id_map: Option<IdMap>,
    limit_swap: bool,
    /// The edgewake binary the runtime runs as the network hook.
    hook_exe: PathBuf,
    init: Option<PathBuf>,
}

impl SandboxDriver {
    /// Checks the host, installs the machine firewall and opens the image store.
    pub fn new(
        data_dir: &Path,
        config: &SandboxConfig,
        images: Arc<ImageStore>,
        hook_exe: PathBuf,
    ) -> Result<SandboxDriver, SetupError> {
        let host = preflight::check(config)?;
        for warning in &host.warnings {
            tracing::warn!("sandbox: {warning}");
        }
        let range = config.network;
        let machines_dir = data_dir.join("machines");
        dir_with_mode(&machines_dir, 0o711).map_err(SetupError::dir(&machines_dir))?;
        if config.user_namespace {
            check_reachable(&machines_dir)?;
        }
        network::install_firewall(&range.to_string(), config.egress)?;
        Ok(SandboxDriver {
            images,
            runtime: Runtime::new(host.runtime, data_dir.join("runc")),
            plan: RunPlan {
                machines_dir,
                gateway: range.gateway(),
                egress: config.egress,
                pids_limit: config.pids_limit,
                rootfs_size_mb: config.rootfs_size_mb,
                id_map: config.user_namespace.then_some(IdMap {
                    host_id: config.id_map_base,
                    size: config.id_map_size,
                }),
                limit_swap: host.limit_swap,
                hook_exe,
                init: (!config.init.is_empty()).then(|| PathBuf::from(&config.init)),
            },
            network: range.to_string(),
            containers: Arc::new(DashMap::new()),
        })
    }

    fn container_of(&self, instance: &Instance) -> Option<String> {
        self.containers.get(&instance.pid).map(|e| e.clone())
    }

    /// Publishes the run's end once runc has exited and the container is cleaned up:
    /// the OOM count is read from the kept cgroup first.
    fn watch_exit(
        &self,
        mut child: tokio::process::Child,
        id: String,
        pid: u32,
    ) -> watch::Receiver<Option<Exit>> {
        let (tx, rx) = watch::channel(None);
        let runtime = self.runtime.clone();
        let containers = self.containers.clone();
        let dir = self.plan.machines_dir.join(&id);
        tokio::spawn(async move {
            let status = child.wait().await;
            let oom_killed = runtime::oom_kills(&id) > 0;
            runtime.delete(&id).await;
            let _ = tokio::task::spawn_blocking(move || Overlay::unmount_in(&dir)).await;
            containers.remove(&pid);
            let exit = match status {
                Ok(status) => decode_exit(status.code(), oom_killed),
                Err(_) => Exit::UNKNOWN,
            };
            let _ = tx.send(Some(exit));
        });
        rx
    }
}

impl RunPlan {
    fn link(&self, launch: &Launch) -> Link {
        Link {
            address: launch.private_ip,
            gateway: self.gateway,
            egress: self.egress,
        }
    }

    /// Clears what an earlier run left (a kept container, mounts), then mounts a fresh
    /// root over the image (holding the store's trees, so none is removed meanwhile) and
    /// writes the bundle. Blocking: file system and process work.
    fn prepare(
        &self,
        runtime: &Runtime,
        images: &ImageStore,
        launch: &Launch,
        image: &Image,
    ) -> Result<PathBuf, DriverError> {
        let dir = self.machines_dir.join(&launch.machine_id);
        dir_with_mode(&dir, 0o711).map_err(DriverError::Files)?;
        if runtime.has_container(&launch.machine_id) {
            runtime.remove_blocking(&launch.machine_id);
        }
        let overlay = Overlay::in_dir(&dir, &image.rootfs);
        {
            let _trees = images.hold_trees()?;
            if !image.rootfs.is_dir() {
                return Err(DriverError::ImageRemoved);
            }
            overlay
                .mount_fresh(self.id_map.map(|m| m.host_id), self.rootfs_size_mb)
                .map_err(DriverError::Files)?;
        }
        self.write_bundle(&dir, launch, image, &overlay)
            .inspect_err(|_| overlay.unmount())
    }

    fn write_bundle(
        &self,
        dir: &Path,
        launch: &Launch,
        image: &Image,
        overlay: &Overlay,
    ) -> Result<PathBuf, DriverError> {
        let run = RunSpec {
            launch,
            image: &image.config,
            image_rootfs: &image.rootfs,
            rootfs: &overlay.target,
            pids_limit: self.pids_limit,
            id_map: self.id_map,
            limit_swap: self.limit_swap,
            network_hook: (self.hook_exe.clone(), self.link(launch).hook_args()),
            init: self.init.clone(),
        };
        let spec = bundle::runtime_spec(&run)?;
        // The bundle holds the machine's environment (its secrets): root's alone.
        let bundle = dir.join("bundle");
        dir_with_mode(&bundle, 0o700).map_err(DriverError::Files)?;
        let json = serde_json::to_vec_pretty(&spec).expect("specs serialise");
        std::fs::write(bundle.join("config.json"), json).map_err(DriverError::Files)?;
        Ok(bundle)
    }
}

/// In a user namespace, a machine's root user (an unprivileged id on the host) mounts
/// its root: every directory above it must let others through (o+x).
fn check_reachable(machines_dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::PermissionsExt;
    let absolute = std::path::absolute(machines_dir).map_err(SetupError::dir(machines_dir))?;
    for dir in absolute.ancestors().skip(1) {
        let mode = std::fs::metadata(dir)
            .map_err(SetupError::dir(dir))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(SetupError::Closed {
                dir: dir.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(())
}

/// runc exits with the container's code, or 128 + the signal that killed it.
fn decode_exit(code: Option<i32>, oom_killed: bool) -> Exit {
    match code {
        Some(code) if code > 128 && code < 128 + 65 => Exit {
            code: None,
            signal: Some(code - 128),
            oom_killed,
        },
        code => Exit {
            code,
            signal: None,
            oom_killed,
        },
    }
}

#[async_trait]
impl Driver for SandboxDriver {
    async fn check_image(&self, image: &str) -> Result<(), DriverError> {
        self.images.resolve(image).await?;
        Ok(())
    }

    async fn start(&self, launch: Launch) -> Result<Instance, DriverError> {
        let image = self.images.resolve(&launch.image).await?;
        let (plan, runtime, images) =
            (self.plan.clone(), self.runtime.clone(), self.images.clone());
        let id = launch.machine_id.clone();
        let bundle =
            tokio::task::spawn_blocking(move || plan.prepare(&runtime, &images, &launch, &image))
                .await
                .map_err(DriverError::Prepare)??;
        let log = MachineLog::open(&self.plan.machines_dir.join(&id).join("machine.log")).map_err(
            |e| {
                Overlay::unmount_in(&self.plan.machines_dir.join(&id));
                DriverError::Files(e)
            },
        )?;
        let mut command = self.runtime.run(&id, &bundle);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|source| {
            Overlay::unmount_in(&self.plan.machines_dir.join(&id));
            DriverError::Spawn {
                command: "runc run".into(),
                source,
            }
        })?;
        log.pump(child.stdout.take().expect("piped"));
        log.pump(child.stderr.take().expect("piped"));
        let pid = child.id().unwrap_or_default();
        self.containers.insert(pid, id.clone());
        Ok(Instance::new(pid, self.watch_exit(child, id, pid)))
    }

    /// The machine listens at `addr` itself: a socket there in its own network
    /// namespace, held by its processes (under `runc run`).
    async fn accepts(&self, instance: &Instance, addr: std::net::SocketAddr) -> bool {
        sockets::machine_accepts(instance, addr).await
    }

    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit {
        if let Some(exit) = instance.exit_status() {
            return exit;
        }
        let Some(id) = self.container_of(instance) else {
            return instance.exited().await;
        };
        self.runtime.kill(&id, signal, false).await;
        if let Ok(exit) = tokio::time::timeout(timeout, instance.exited()).await {
            return exit;
        }
        self.runtime.kill(&id, Signal::SIGKILL, true).await;
        match tokio::time::timeout(KILL_GRACE, instance.exited()).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::error!(
                    machine = id,
                    "the container outlived SIGKILL; giving up on it"
                );
                Exit::UNKNOWN
            }
        }
    }

    fn signal(&self, instance: &Instance, signal: Signal) {
        if let Some(id) = self.container_of(instance) {
            let runtime = self.runtime.clone();
            tokio::spawn(async move { runtime.kill(&id, signal, false).await });
        }
    }

    /// `runc delete --force` returns once the container is gone.
    async fn reap_orphan(&self, machine_id: &str, pid: u32) {
        tracing::warn!(
            machine = machine_id,
            runc = pid,
            "removing a container left by an earlier edgewake"
        );
        let (runtime, id) = (self.runtime.clone(), machine_id.to_string());
        let dir = self.plan.machines_dir.join(machine_id);
        let removed = tokio::task::spawn_blocking(move || {
            runtime.remove_blocking(&id);
            Overlay::unmount_in(&dir);
        });
        if let Err(e) = removed.await {
            tracing::error!(machine = machine_id, "removing the container failed: {e}");
        }
    }

    async fn forget(&self, machine_id: &str) {
        self.runtime.delete(machine_id).await;
        Overlay::unmount_in(&self.plan.machines_dir.join(machine_id));
        remove_machine_dir(&self.plan.machines_dir, machine_id).await;
    }

    fn log_path(&self, machine_id: &str) -> Option<PathBuf> {
        Some(self.plan.machines_dir.join(machine_id).join("machine.log"))
    }

    /// Removes this range's firewall table and unreachable route.
    fn close(&self) {
        network::remove_firewall(&self.network);
    }

    /// `runc exec` under the machine's walls; at the timeout or the output cap, the
    /// command and all it started are killed (`kill_exec`).
    async fn exec(
        &self,
        launch: &Launch,
        _instance: &Instance,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        if command.is_empty() {
            return Err(DriverError::ExecNeedsCommand);
        }
        let pid_file = self
            .plan
            .machines_dir
            .join(&launch.machine_id)
            .join(format!(
                "exec-{}.pid",
                crate::ids::hex(&crate::ids::random_bytes::<6>())
            ));
        let token = crate::ids::hex(&crate::ids::random_bytes::<8>());
        let mark = format!("{EXEC_MARK}={token}");
        let runc = self
            .runtime
            .exec(&launch.machine_id, &pid_file, &mark, command);
        let (runtime, id, file) = (
            self.runtime.clone(),
            launch.machine_id.clone(),
            pid_file.clone(),
        );
        let kill: exec::Kill = Box::new(move |_| kill_exec(&runtime, &id, &file, &token));
        let output = exec::run(runc, timeout, kill).await;
        let _ = std::fs::remove_file(&pid_file);
        output.map(runtime::exec_answer)
    }
}

/// The variable every exec'd process gets (and its children inherit), valued with the
/// exec's own token.
const EXEC_MARK: &str = "EDGEWAKE_EXEC";

/// Kills an exec'd command and what it started, never anything outside the machine:
/// only processes in the machine's pid namespace are signalled (a saved pid may name a
/// host process by now), found as descendants of the exec'd process or by the exec's
/// mark in their environment (which finds what double-forked or called setsid).
fn kill_exec(runtime: &Runtime, id: &str, pid_file: &Path, token: &str) {
    let Some(init) = runtime.init_pid(id) else {
        return;
    };
    let Some(machine_ns) = procfs::namespace(&init.to_string(), "pid") else {
        return;
    };
    let mark = format!("{EXEC_MARK}={token}");
    let exec_pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let mut doomed: Vec<u32> = exec_pid.into_iter().collect();
    doomed.extend(exec_pid.map(procfs::descendants).unwrap_or_default());
    doomed.extend(procfs::with_env(&mark));
    doomed.sort_unstable();
    doomed.dedup();
    for pid in doomed {
        if pid != init && procfs::namespace(&pid.to_string(), "pid").as_ref() == Some(&machine_ns) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc's 128 + n is read as death by signal n; plain codes stay codes.
    #[test]
    fn decodes_runc_exit_codes() {
        let killed = decode_exit(Some(137), true);
        assert_eq!(
            (killed.code, killed.signal, killed.oom_killed),
            (None, Some(9), true)
        );
        let failed = decode_exit(Some(3), false);
        assert_eq!((failed.code, failed.signal), (Some(3), None));
    }
}
