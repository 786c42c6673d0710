//! A machine's output log, `machine.log` (0600): what the machine prints is pumped into
//! it, and past `MAX_LOG_BYTES` the file is rotated to `machine.log.1` (the one before
//! is dropped), so a chatty or hostile machine cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// A log file grows to this, then starts anew (the old one kept as `.1`).
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// One machine's log, shared by the pumps of its stdout and stderr.
#[derive(Clone)]
pub struct MachineLog {
    path: PathBuf,
    open: Arc<Mutex<(File, u64)>>,
}

impl MachineLog {
    pub fn open(path: &Path) -> std::io::Result<MachineLog> {
        let file = append(path)?;
        let size = file.metadata()?.len();
        Ok(MachineLog {
            path: path.to_path_buf(),
            open: Arc::new(Mutex::new((file, size))),
        })
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut open = self.open.lock().expect("log lock");
        if open.1 + bytes.len() as u64 > MAX_LOG_BYTES {
            std::fs::rename(&self.path, self.path.with_extension("log.1"))?;
            *open = (append(&self.path)?, 0);
        }
        open.0.write_all(bytes)?;
        open.1 += bytes.len() as u64;
        Ok(())
    }

    /// Copies `output` into the log until it closes (the machine has exited).
    pub fn pump(&self, mut output: impl AsyncRead + Unpin + Send + 'static) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 16 * 1024];
            let mut failing = false;
            // Read to the end whatever happens to the file: a pipe nobody reads would kill
            // the machine (SIGPIPE) or stall it.
            while let Ok(n @ 1..) = output.read(&mut buf).await {
                // The disk work runs on the blocking pool, never on the async workers
                // serving requests (a machine writing flat out would stall them).
                let (writer, chunk) = (log.clone(), buf[..n].to_vec());
                let written = tokio::task::spawn_blocking(move || writer.write(&chunk))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                match written {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        tracing::warn!("cannot write {}: {e}; dropping output", log.path.display());
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the cap the log is rotated: the file never grows beyond it and the older
    /// output is kept once.
    #[tokio::test]
    async fn rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine.log");
        let log = MachineLog::open(&path).unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..20 {
            log.write(&chunk).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= MAX_LOG_BYTES, "{size}");
        assert_eq!(
            std::fs::metadata(path.with_extension("log.1"))
                .unwrap()
                .len(),
            MAX_LOG_BYTES
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
