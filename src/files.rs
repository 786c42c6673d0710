//! File-system helpers shared by the image store, the sandbox driver and the keeper
//! of certificates and keys.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes `dir` with exactly `mode`, whatever the umask or an earlier mode (its parents,
/// if missing, get the usual mode: only `dir` is private).
pub fn dir_with_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Writes `bytes` to `path` readable by its owner only (0600), whole or not at all: a
/// crash mid-write leaves the old file, never half a key. The new file is written
/// beside it, synced, then renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = Path::new(&partial);
    let _ = std::fs::remove_file(partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directory gets the mode, even over an existing one; its new parents do not.
    #[test]
    fn only_the_directory_is_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        dir_with_mode(&dir, 0o700).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_ne!(mode(&base.path().join("a")), 0o700);
        dir_with_mode(&dir, 0o711).unwrap();
        assert_eq!(mode(&dir), 0o711);
    }

    /// A private file is 0600 whatever the umask, and replaces the old one whole.
    #[test]
    fn private_files_replace_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"old").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
