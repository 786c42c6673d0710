//! The store's advisory lock, `images/lock` (flock(2), through std's `File::lock`):
//! every write to the store (copy, unpack, untag, garbage collection) holds it
//! exclusively, across processes (the server and the CLI) and across tasks alike, as
//! each holder opens the file anew.

use super::ImageError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Waits for the exclusive lock, on a blocking thread.
pub async fn exclusive(path: &Path) -> Result<StoreLock, ImageError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || take(&path, File::lock))
        .await
        .map_err(|e| ImageError::Io {
            path: PathBuf::from("images/lock"),
            source: std::io::Error::other(e),
        })?
}

/// Waits for the shared lock (no writer at work), blocking the calling thread.
pub fn shared_blocking(path: &Path) -> Result<StoreLock, ImageError> {
    take(path, File::lock_shared)
}

fn take(path: &Path, lock: fn(&File) -> std::io::Result<()>) -> Result<StoreLock, ImageError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(ImageError::io(path))?;
    lock(&file).map_err(ImageError::io(path))?;
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While one holder has the lock exclusively, no one else can take it, shared or not.
    #[tokio::test]
    async fn exclusive_holder_keeps_others_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = exclusive(&path).await.unwrap();
        let other = File::open(&path).unwrap();
        assert!(
            other.try_lock_shared().is_err(),
            "shared lock taken past a writer"
        );
        drop(held);
        other.try_lock().unwrap();
    }
}
