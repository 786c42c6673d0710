//! `<data_dir>/edgewake.pid`: the pid of the edgewake serving from a data dir, under an
//! exclusive flock(2) held for the server's whole life. The lock, not the number, says
//! whether a server runs: a file left by a crash is unlocked (so it is reused), and a
//! pid since given to another process is never signalled.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The pid file's name in the data dir.
pub const PID_FILE: &str = "edgewake.pid";

#[derive(Debug, thiserror::Error)]
pub enum PidError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another edgewake (pid {pid}) is serving from {data_dir}: stop it first, or give \
         this one its own data dir"
    )]
    Taken { pid: String, data_dir: PathBuf },
    #[error(
        "no edgewake is serving from {data_dir} (no locked {PID_FILE} there); is the data \
         dir right? (--data-dir, or data_dir in the config)"
    )]
    NotRunning { data_dir: PathBuf },
    #[error("{path} holds `{text}`, not a pid")]
    Garbled { path: PathBuf, text: String },
}

/// The server's claim on its data dir; the file stays, unlocked, when it is dropped.
#[derive(Debug)]
pub struct PidFile {
    _file: File,
}

impl PidFile {
    /// Locks the data dir's pid file and writes this process's pid into it; fails,
    /// naming the pid, when another edgewake holds it.
    pub fn claim(data_dir: &Path) -> Result<PidFile, PidError> {
        let path = data_dir.join(PID_FILE);
        let io = |source| PidError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(PidError::Taken {
                    pid: read_text(&mut file).unwrap_or_default(),
                    data_dir: data_dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(PidFile { _file: file })
    }
}

/// The pid of the edgewake serving from `data_dir`: its pid file must be locked.
pub fn running_pid(data_dir: &Path) -> Result<i32, PidError> {
    let path = data_dir.join(PID_FILE);
    let not_running = || PidError::NotRunning {
        data_dir: data_dir.to_path_buf(),
    };
    let mut file = File::open(&path).map_err(|_| not_running())?;
    match file.try_lock_shared() {
        Ok(()) => return Err(not_running()),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(source)) => return Err(PidError::Io { path, source }),
    }
    let text = read_text(&mut file).map_err(|source| PidError::Io {
        path: path.clone(),
        source,
    })?;
    text.parse().map_err(|_| PidError::Garbled { path, text })
}

fn read_text(file: &mut File) -> std::io::Result<String> {
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claimed data dir names its server's pid; a second claim is refused naming it;
    /// once the claim is dropped the dir has no server and can be claimed again.
    #[test]
    fn one_server_per_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let claim = PidFile::claim(dir.path()).unwrap();
        assert_eq!(running_pid(dir.path()).unwrap(), std::process::id() as i32);
        let err = PidFile::claim(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(claim);
        assert!(matches!(
            running_pid(dir.path()),
            Err(PidError::NotRunning { .. })
        ));
        PidFile::claim(dir.path()).unwrap();
    }
}
