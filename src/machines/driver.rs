//! The `Driver` trait: how a machine record becomes something running, and back.

use async_trait::async_trait;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;
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
}

/// How a machine's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
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
            Err(_) => Exit {
                code: None,
                signal: None,
            },
        }
    }

    /// The exit, if it has already happened.
    pub fn exit_status(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

/// Why a driver could not start a machine.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("unknown image `{0}`: it is not in the image catalog")]
    UnknownImage(String),
    #[error("cannot prepare the machine's files: {0}")]
    Files(std::io::Error),
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// Realises machines. `process` runs local commands; later drivers run sandboxed images.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Whether the driver can run this image; the API refuses machines it cannot.
    fn check_image(&self, image: &str) -> Result<(), DriverError>;

    /// Starts one run of the machine. Filesystem changes of earlier runs are gone.
    async fn start(&self, launch: Launch) -> Result<Instance, DriverError>;

    /// Sends `signal`, waits up to `timeout`, then kills. Returns how the machine ended.
    async fn stop(&self, instance: &Instance, signal: Signal, timeout: Duration) -> Exit;

    /// Sends `signal` to the running machine without waiting for anything.
    fn signal(&self, instance: &Instance, signal: Signal);

    /// Kills what a crashed edgewake left running for this machine, if it is still there.
    fn reap_orphan(&self, machine_id: &str, pid: u32);

    /// Removes what the driver kept for a destroyed machine (files, logs).
    async fn forget(&self, machine_id: &str);

    /// Where the machine's output is captured, if the driver keeps it.
    fn log_path(&self, machine_id: &str) -> Option<std::path::PathBuf>;
}

/// Reads a signal name (`SIGTERM`, `TERM`, `sigint`) or number (`15`).
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("`{text}` is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("`{text}` is not a signal name like SIGTERM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals are read by name in any case, with or without SIG, or by number.
    #[test]
    fn parses_signal_spellings() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
