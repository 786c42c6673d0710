//! Unpacked root filesystems, `images/rootfs/<digest hex>[-<host id>-<size>]`: one per
//! manifest and id map, unpacked by umoci (layers in order, whiteouts applied, owners
//! and modes kept or shifted) into a temporary directory, then renamed into place, so
//! a tree under its final name is always whole. Machines use them as the read-only
//! lower layer of their overlays: nothing writes them after the rename.

use super::tools::{self, UMOCI};
use super::{IdMap, ImageError};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Prefix of trees being unpacked (left behind only by a crash).
const UNPACKING_PREFIX: &str = ".unpacking-";

/// The tree's directory name for a manifest digest and id map.
pub fn dir_name(digest: &str, id_map: Option<IdMap>) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    match id_map {
        Some(IdMap { host_id, size }) => format!("{hex}-{host_id}-{size}"),
        None => hex.to_string(),
    }
}

/// Unpacks the image `layout:name` to `target` (caller holds the store lock).
pub async fn unpack(
    layout: &Path,
    name: &str,
    target: &Path,
    id_map: Option<IdMap>,
) -> Result<(), ImageError> {
    let parent = target.parent().expect("rootfs trees live in a directory");
    let file_name = target.file_name().expect("named").to_string_lossy();
    let staging = parent.join(format!("{UNPACKING_PREFIX}{file_name}"));
    remove_tree(staging.clone()).await?;
    let result = tools::run(UMOCI, &unpack_args(layout, name, &staging, id_map)?).await;
    if let Err(e) = result {
        remove_tree(staging).await?;
        return Err(e);
    }
    std::fs::rename(&staging, target).map_err(ImageError::io(target))
}

fn unpack_args(
    layout: &Path,
    name: &str,
    staging: &Path,
    id_map: Option<IdMap>,
) -> Result<Vec<String>, ImageError> {
    let mut args = vec!["raw".to_string(), "unpack".to_string()];
    if let Some(IdMap { host_id, size }) = id_map {
        args.push(format!("--uid-map=0:{host_id}:{size}"));
        args.push(format!("--gid-map=0:{host_id}:{size}"));
    }
    if !running_as_root()? {
        // Without root, files cannot be given their owners: umoci records them instead.
        args.push("--rootless".into());
    }
    args.push(format!("--image={}:{name}", layout.display()));
    args.push(staging.display().to_string());
    Ok(args)
}

fn running_as_root() -> Result<bool, ImageError> {
    let proc_self = Path::new("/proc/self");
    let meta = std::fs::metadata(proc_self).map_err(ImageError::io(proc_self))?;
    Ok(meta.uid() == 0)
}

/// Removes every tree whose digest is not in `kept` (hex digests), and any staging
/// tree a crash left (caller holds the store lock). Returns what it removed.
pub async fn prune(dir: &Path, kept: &HashSet<String>) -> Result<Vec<PathBuf>, ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(dir)(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ImageError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let hex = name.split('-').next().unwrap_or_default();
        let unused = name.starts_with(UNPACKING_PREFIX) || !kept.contains(hex);
        // A tree a running machine's root is mounted over stays, whatever the index
        // says (its tag moved, say): deleting it would pull files from under the machine.
        if unused && !mounted_over(&entry.path()) {
            remove_tree(entry.path()).await?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Whether a machine's overlay uses a tree of this digest (`tree`, or `tree` with an id
/// map suffix) as its lower layer: removing it under a running machine would pull files
/// from under it.
pub fn mounted_over(tree: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let lower = format!("lowerdir={}", tree.display());
    mounts.lines().any(|line| {
        line.split(&[' ', ','][..])
            .any(|option| option == lower || option.starts_with(&format!("{lower}-")))
    })
}

/// Removes a tree (if there), on a blocking thread: trees are large.
async fn remove_tree(path: PathBuf) -> Result<(), ImageError> {
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::io(&path)(e)),
        _ => Ok(()),
    })
    .await
    .map_err(|e| ImageError::Io {
        path: PathBuf::from("rootfs"),
        source: std::io::Error::other(e),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trees are named by manifest digest, plus the id map when there is one.
    #[test]
    fn names_carry_digest_and_id_map() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(dir_name(&digest, None), "ab".repeat(32));
        let map = IdMap {
            host_id: 200_000,
            size: 65_536,
        };
        assert_eq!(
            dir_name(&digest, Some(map)),
            format!("{}-200000-65536", "ab".repeat(32))
        );
    }

    /// Pruning keeps trees of kept digests (any id map) and drops the rest and leftovers.
    #[tokio::test]
    async fn prune_keeps_referenced_trees_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["aaa", "aaa-1-2", "bbb", ".unpacking-aaa"] {
            std::fs::create_dir_all(dir.path().join(name).join("etc")).unwrap();
        }
        let kept = HashSet::from(["aaa".to_string()]);
        let mut removed = prune(dir.path(), &kept).await.unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [dir.path().join(".unpacking-aaa"), dir.path().join("bbb")]
        );
        assert!(dir.path().join("aaa-1-2/etc").is_dir());
    }
}
