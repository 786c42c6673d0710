//! Drivers: how a machine record becomes something running, and back. The `Driver`
//! trait and what it speaks in (`Launch`, `Instance`, `Exit`); the `process` and
//! `sandbox` drivers side by side, what both use in `shared`, and the in-memory `fake`
//! driver that lifecycle and race tests run on.

pub mod fake;
pub mod process;
pub mod sandbox;
pub mod shared;

use crate::images::ImageError;
use async_trait::async_trait;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::sync::watch;

/// Everything a driver needs to run one machine once.
#[derive(Debug, Clone)]
pub struct Launch {
    pub machine_id: String,
    pub app: String,
    pub region: String,
    pub instance_id: String,
    pub private_ip: Ipv4Addr,
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// The port the machine's code listens on (`PORT`).
    pub port: u16,
    /// Fly's `init` overrides of the image's entrypoint and command.
    pub init: Init,
    pub guest: Guest,
}

/// What runs in the machine instead of the image's defaults (Fly's `config.init`):
/// `exec` replaces both entrypoint and command; `entrypoint` and `cmd` each replace theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct Init {
    pub exec: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
}

/// The machine's size (Fly's `config.guest`): limits the sandbox enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub memory_mb: u64,
    pub cpus: u32,
}

/// What a command run in a machine printed, and how it ended (Fly's exec response).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ExecOutput {
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// How a machine's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The kernel killed it for using more memory than `guest.memory_mb`.
    pub oom_killed: bool,
}

impl Exit {
    /// An exit that could not be observed.
    pub const UNKNOWN: Exit = Exit {
        code: None,
        signal: None,
        oom_killed: false,
    };
}

/// A running machine, as the driver reports it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub pid: u32,
    exit: watch::Receiver<Option<Exit>>,
}

impl Instance {
    pub fn new(pid: u32, exit: watch::Receiver<Option<Exit>>) -> Instance {
        Instance { pid, exit }
    }

    /// Resolves when the machine's process has exited.
    pub async fn exited(&self) -> Exit {
        let mut rx = self.exit.clone();
        let exit = rx.wait_for(Option::is_some).await.map(|e| *e);
        match exit {
            Ok(e) => e.expect("waited for Some"),
            // The watcher is gone without a word: the process cannot be observed any more.
            Err(_) => Exit::UNKNOWN,
        }
    }

    /// The exit, if it has already happened.
    pub fn exit_status(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

/// Why a driver could not take, start or exec in a machine, and whose the fault is: the
/// caller's image (unknown, not found), the registry, or this host.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The process driver runs catalog entries only; the message says how to go on.
    #[error(
        "unknown image `{0}`: the process driver runs only the images in its catalog. Add \
         one to the config and restart edgewake: [images.\"{0}\"] command = [\"sh\", \"-c\", \
         \"exec python3 -m http.server --bind $FLY_PRIVATE_IP $PORT\"] (your program, \
         listening on $FLY_PRIVATE_IP:$PORT); or run OCI images with `edgewake serve \
         --driver sandbox`"
    )]
    UnknownImage(String),
    /// No such image or tag, or a reference that names none.
    #[error(transparent)]
    ImageNotFound(ImageError),
    #[error("cannot get the image: {0}")]
    Registry(#[source] ImageError),
    /// The local image store failed: its tools, its files, its lock.
    #[error("the image store failed: {0}")]
    ImageStore(#[source] ImageError),
    /// The image was removed from the store between its lookup and the mount.
    #[error("the image's files were removed while the run was prepared: start again")]
    ImageRemoved,
    #[error("the sandbox cannot run the machine: {0}")]
    Bundle(#[from] sandbox::bundle::BundleError),
    /// The blocking task that prepares a run panicked or was cancelled.
    #[error("preparing the run failed: {0}")]
    Prepare(#[source] tokio::task::JoinError),
    #[error("exec needs a command")]
    ExecNeedsCommand,
    #[error("this driver cannot run commands in machines")]
    ExecUnsupported,
    #[error("the command ran past its {0:?} timeout and was killed")]
    ExecTimeout(Duration),
    #[error("cannot prepare the machine's files: {0}")]
    Files(#[source] std::io::Error),
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// An image the store cannot give, by whose fault: the reference names nothing (the
/// caller's), the registry failed, or the store itself did.
impl From<ImageError> for DriverError {
    fn from(error: ImageError) -> DriverError {
        match error {
            ImageError::NotFound(_) | ImageError::BadReference(_) => {
                DriverError::ImageNotFound(error)
            }
            ImageError::Registry { .. } => DriverError::Registry(error),
            other => DriverError::ImageStore(other),
        }
    }
}

/// Realises machines: `process` runs local commands, `sandbox` OCI images under runc,
/// `fake` nothing at all (for tests).
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Makes the image ready to run (a sandbox pulls it); the API refuses machines whose
    /// image the driver cannot run.
    async fn check_image(&self, image: &str) -> Result<(), DriverError>;

    /// Starts one run of the machine. Filesystem changes of earlier runs are gone.
    async fn start(&self, launch: Launch) -> Result<Instance, DriverError>;

    /// Whether the started machine accepts connections at `addr` (the readiness probe).
    /// A driver that can tell should also check that what accepts is the machine
    /// (`shared::sockets`): the default only connects.
    async fn accepts(&self, _instance: &Instance, addr: SocketAddr) -> bool {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    }

    /// Sends `signal`, waits up to `timeout`, then kills. Returns how the machine ended.
    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit;

    /// Sends `signal` to the running machine without waiting for anything.
    fn signal(&self, instance: &Instance, signal: Signal);

    /// Kills what a crashed edgewake left running for this machine, if it is still
    /// there, and returns once it is gone (or the driver gives up on it, saying so): a
    /// new run must not race the old one for the machine's address.
    async fn reap_orphan(&self, machine_id: &str, pid: u32);

    /// Removes what the driver kept for a destroyed machine (files, logs).
    async fn forget(&self, machine_id: &str);

    /// Where the machine's output is captured, if the driver keeps it.
    fn log_path(&self, machine_id: &str) -> Option<std::path::PathBuf>;

    /// Takes down what the driver set up on the host, once every machine has stopped.
    fn close(&self) {}

    /// Runs `command` inside the running machine, as its own processes run, and
    /// returns what it printed; killed after `timeout`.
    async fn exec(
        &self,
        launch: &Launch,
        instance: &Instance,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError>;
}
