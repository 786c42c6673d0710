//! File-system helpers shared by the image store and the sandbox driver.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
}
