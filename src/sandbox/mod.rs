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
use crate::images::{IdMap, ImageError, ImageStore};
use crate::machines::addresses::AddressRange;
use crate::machines::driver::{Driver, DriverError, ExecOutput, Exit, Instance, Launch};
use crate::machines::process::{open_log, remove_machine_dir, run_exec};
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

pub struct SandboxDriver {
    machines_dir: PathBuf,
    runtime: Runtime,
    images: Arc<ImageStore>,
    gateway: std::net::Ipv4Addr,
    /// The machines' range (CIDR), as configured.
    network: String,
    egress: bool,
    pids_limit: u32,
    id_map: Option<IdMap>,
    limit_swap: bool,
    /// The edgewake binary the runtime runs as the network hook.
    hook_exe: PathBuf,
    /// Running containers by the pid of their `runc run`.
    containers: Arc<DashMap<u32, String>>,
}

impl SandboxDriver {
    /// Checks the host, installs the machine firewall and opens the image store.
    pub fn new(
        data_dir: &Path,
        config: &SandboxConfig,
        images: Arc<ImageStore>,
        hook_exe: PathBuf,
    ) -> Result<SandboxDriver, String> {
        let host = preflight::check(config)?;
        network::install_firewall(&config.network, config.egress)?;
        let range = AddressRange::parse_private(&config.network)?;
        let id_map = config.user_namespace.then_some(IdMap {
            host_id: config.id_map_base,
            size: config.id_map_size,
        });
        Ok(SandboxDriver {
            machines_dir: data_dir.join("machines"),
            runtime: Runtime::new(host.runtime, data_dir.join("runc")),
            images,
            gateway: range.gateway(),
            network: config.network.clone(),
            egress: config.egress,
            pids_limit: config.pids_limit,
            id_map,
            limit_swap: host.limit_swap,
            hook_exe,
            containers: Arc::new(DashMap::new()),
        })
    }

    fn link(&self, launch: &Launch) -> Link {
        Link {
            address: launch.private_ip,
            gateway: self.gateway,
            egress: self.egress,
        }
    }

    /// Clears what an earlier run left (a kept container, a mounted root), then mounts
    /// a fresh root and writes the bundle. Blocking: file system work.
    fn prepare(
        &self,
        launch: &Launch,
        image: &crate::images::Image,
    ) -> Result<PathBuf, DriverError> {
        let dir = self.machines_dir.join(&launch.machine_id);
        if self.runtime.has_container(&launch.machine_id) {
            self.runtime.remove_blocking(&launch.machine_id);
        }
        let overlay = Overlay::in_dir(&dir, &image.rootfs);
        overlay
            .mount_fresh(self.id_map.map(|m| m.host_id))
            .map_err(DriverError::Files)?;
        let run = RunSpec {
            launch,
            image: &image.config,
            image_rootfs: &image.rootfs,
            rootfs: &overlay.target,
            pids_limit: self.pids_limit,
            id_map: self.id_map,
            limit_swap: self.limit_swap,
            network_hook: (self.hook_exe.clone(), self.link(launch).hook_args()),
        };
        let spec = bundle::runtime_spec(&run).map_err(|e| {
            runtime::unmount(&overlay.target);
            DriverError::Runtime(e)
        })?;
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).map_err(DriverError::Files)?;
        let json = serde_json::to_vec_pretty(&spec).expect("specs serialise");
        std::fs::write(bundle.join("config.json"), json).map_err(DriverError::Files)?;
        Ok(bundle)
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
        let rootfs = self.machines_dir.join(&id).join("rootfs");
        tokio::spawn(async move {
            let status = child.wait().await;
            let oom_killed = runtime::oom_kills(&id) > 0;
            runtime.delete(&id).await;
            runtime::unmount(&rootfs);
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

impl Drop for SandboxDriver {
    fn drop(&mut self) {
        network::remove_range_route(&self.network);
    }
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

fn image_error(error: ImageError) -> DriverError {
    match error {
        ImageError::NotFound(_) | ImageError::BadReference(_) => {
            DriverError::ImageNotFound(error.to_string())
        }
        ImageError::Registry { .. } => DriverError::Registry(error.to_string()),
        other => DriverError::Runtime(other.to_string()),
    }
}

#[async_trait]
impl Driver for SandboxDriver {
    async fn check_image(&self, image: &str) -> Result<(), DriverError> {
        self.images
            .resolve(image)
            .await
            .map(|_| ())
            .map_err(image_error)
    }

    async fn start(&self, launch: Launch) -> Result<Instance, DriverError> {
        let image = self
            .images
            .resolve(&launch.image)
            .await
            .map_err(image_error)?;
        let bundle = self.prepare(&launch, &image)?;
        let machine_dir = self.machines_dir.join(&launch.machine_id);
        let (stdout, stderr) = open_log(&machine_dir).map_err(DriverError::Files)?;
        let mut command = self.runtime.run(&launch.machine_id, &bundle);
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|source| DriverError::Spawn {
            command: "runc run".into(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        self.containers.insert(pid, launch.machine_id.clone());
        Ok(Instance::new(
            pid,
            self.watch_exit(child, launch.machine_id, pid),
        ))
    }

    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit {
        if let Some(exit) = instance.exit_status() {
            return exit;
        }
        let Some(id) = self.containers.get(&instance.pid).map(|e| e.clone()) else {
            return instance.exited().await;
        };
        self.runtime.kill(&id, signal, false).await;
        if let Ok(exit) = tokio::time::timeout(timeout, instance.exited()).await {
            return exit;
        }
        self.runtime.kill(&id, Signal::SIGKILL, true).await;
        instance.exited().await
    }

    fn signal(&self, instance: &Instance, signal: Signal) {
        if let Some(id) = self.containers.get(&instance.pid).map(|e| e.clone()) {
            let runtime = self.runtime.clone();
            tokio::spawn(async move { runtime.kill(&id, signal, false).await });
        }
    }

    fn reap_orphan(&self, machine_id: &str, pid: u32) {
        tracing::warn!(
            machine = machine_id,
            runc = pid,
            "removing a container left by an earlier edgewake"
        );
        self.runtime.remove_blocking(machine_id);
        runtime::unmount(&self.machines_dir.join(machine_id).join("rootfs"));
    }

    async fn forget(&self, machine_id: &str) {
        self.runtime.delete(machine_id).await;
        runtime::unmount(&self.machines_dir.join(machine_id).join("rootfs"));
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
        if command.is_empty() {
            return Err(DriverError::Runtime("exec needs a command".into()));
        }
        run_exec(self.runtime.exec(&launch.machine_id, command), timeout).await
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
