//! The image store with the real tools: test images built by umoci, imported from an OCI
//! layout, a `docker save`-style tarball and an OCI archive, pulled from a real
//! `docker-registry` on loopback, unpacked (whiteouts, modes, shifted owners), removed;
//! and the `edgewake images` commands.

mod support;

use edgewake::images::{IdMap, Image, ImageError, ImageStore, RegistryAuth, RunConfig};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use support::free_port;
use support::images::*;
use tempfile::TempDir;

/// A name for the test image in the store.
const NAME: &str = "example.com/tests/app:v1";

/// A temp dir with the test image's layout in it, and an empty store beside it.
fn setup() -> (TempDir, std::path::PathBuf, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(dir.path());
    let store = ImageStore::new(&dir.path().join("data"), Vec::new(), None);
    (dir, layout, store)
}

/// The file the second layer deletes is gone, the rest is there with its mode.
fn assert_rootfs(image: &Image) {
    let keep = std::fs::read_to_string(image.rootfs.join("etc/keep")).unwrap();
    assert_eq!(keep, KEPT_TEXT);
    assert!(
        !image.rootfs.join(DELETED_FILE).exists(),
        "whiteout not applied"
    );
    let app = std::fs::metadata(image.rootfs.join("bin/app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o777, 0o755);
}

/// An OCI layout imports under the given name; resolve unpacks it once (whiteout applied)
/// and gives the image's run config; a second resolve is the cached same image.
#[tokio::test]
async fn oci_layout_imports_and_resolves() {
    let (dir, layout, store) = setup();
    let infos = store.import(&layout, Some(NAME)).await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].reference, NAME);
    let image = store.resolve(NAME).await.unwrap();
    assert_eq!(image.digest, infos[0].digest);
    let hex = image.digest.strip_prefix("sha256:").unwrap();
    assert_eq!(
        image.rootfs,
        dir.path().join("data/images/rootfs").join(hex)
    );
    assert_rootfs(&image);
    let expected = RunConfig {
        entrypoint: vec![ENTRYPOINT.into()],
        cmd: vec!["serve".into(), "--port=8080".into()],
        env: vec!["FOO=bar".into(), "PATH=/bin".into()],
        working_dir: Some("/srv".into()),
        user: Some("1000:1000".into()),
    };
    assert_eq!(image.config, expected);
    assert_eq!(store.resolve(NAME).await.unwrap(), image);
}

/// A `docker save`-style tarball imports under the name it carries, normalised.
#[tokio::test]
async fn docker_archive_imports_under_its_own_name() {
    let (dir, layout, store) = setup();
    let tarball = dir.path().join("saved.tar");
    copy_image(
        &layout,
        &format!("docker-archive:{}:myapp:v2", tarball.display()),
        &[],
    );
    let infos = store.import(&tarball, None).await.unwrap();
    assert_eq!(infos[0].reference, "docker.io/library/myapp:v2");
    let listed = store.list().unwrap();
    assert_eq!(listed, infos);
    assert_rootfs(&store.resolve("myapp:v2").await.unwrap());
}

/// An OCI archive (a tar of a layout tagged only `v1`) imports under the given name.
#[tokio::test]
async fn oci_archive_imports_with_a_name() {
    let (dir, layout, store) = setup();
    let archive = dir.path().join("image.oci.tar");
    copy_image(
        &layout,
        &format!("oci-archive:{}:v1", archive.display()),
        &[],
    );
    store.import(&archive, Some("archived")).await.unwrap();
    let image = store
        .resolve("docker.io/library/archived:latest")
        .await
        .unwrap();
    assert_rootfs(&image);
    assert_eq!(image.config.entrypoint, [ENTRYPOINT]);
}

/// A source whose image is tagged only `v1` names no repository: a name is required.
#[tokio::test]
async fn unnamed_source_needs_a_name() {
    let (_dir, layout, store) = setup();
    let err = store.import(&layout, None).await.unwrap_err();
    assert!(matches!(err, ImageError::BadSource { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

/// An image not in the store is pulled from its registry on first resolve, once for
/// concurrent resolves; then listed with its digest.
#[tokio::test]
async fn resolve_pulls_once_from_a_registry() {
    let (dir, layout, store) = setup();
    let registry = Registry::start(dir.path(), None);
    let reference = format!("{}/fns:v1", registry.host);
    copy_image(&layout, &format!("docker://{reference}"), &[]);
    let pushed_gets = registry.manifest_gets("fns", "v1");
    let store = Arc::new(store);
    let resolves = (0..4).map(|_| {
        let (store, reference) = (store.clone(), reference.clone());
        tokio::spawn(async move { store.resolve(&reference).await })
    });
    let images: Vec<Image> = futures_util::future::join_all(resolves)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(images.iter().all(|i| *i == images[0]));
    assert_rootfs(&images[0]);
    assert_eq!(
        registry.manifest_gets("fns", "v1") - pushed_gets,
        1,
        "pulled more than once"
    );
    let listed = store.list().unwrap();
    assert_eq!(
        (listed[0].reference.as_str(), &listed[0].digest),
        (reference.as_str(), &images[0].digest)
    );
}

/// A reference by digest pulls that manifest and keeps the digest in its name.
#[tokio::test]
async fn pull_by_digest() {
    let (dir, layout, store) = setup();
    let registry = Registry::start(dir.path(), None);
    copy_image(&layout, &format!("docker://{}/fns:v1", registry.host), &[]);
    let tagged = store
        .pull(&format!("{}/fns:v1", registry.host))
        .await
        .unwrap();
    let by_digest = format!("{}/fns@{}", registry.host, tagged.digest);
    let image = store.resolve(&by_digest).await.unwrap();
    assert_eq!(
        (image.reference.as_str(), &image.digest),
        (by_digest.as_str(), &tagged.digest)
    );
    assert_rootfs(&image);
}

/// A tag the registry does not have is NotFound, on pull and on resolve.
#[tokio::test]
async fn missing_tag_is_not_found() {
    let (dir, layout, store) = setup();
    let registry = Registry::start(dir.path(), None);
    copy_image(&layout, &format!("docker://{}/fns:v1", registry.host), &[]);
    let missing = format!("{}/fns:nope", registry.host);
    let err = store.pull(&missing).await.unwrap_err();
    assert!(
        matches!(&err, ImageError::NotFound(r) if *r == missing),
        "{err}"
    );
    let err = store
        .resolve(&format!("{}/other:v1", registry.host))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
}

/// A registry nobody listens on is a Registry error that says why.
#[tokio::test]
async fn unreachable_registry_is_a_registry_error() {
    let (_dir, _layout, store) = setup();
    let reference = format!("127.0.0.1:{}/fns:v1", free_port());
    match store.pull(&reference).await.unwrap_err() {
        ImageError::Registry {
            reference: r,
            reason,
        } => {
            assert_eq!(r, reference);
            assert!(reason.contains("connection refused"), "{reason}");
        }
        other => panic!("expected a registry error, got {other}"),
    }
}

/// A new store over the same data dir (a restarted server) finds the unpacked tree and
/// does not unpack it again.
#[tokio::test]
async fn restarted_store_reuses_the_unpacked_tree() {
    let (dir, layout, store) = setup();
    store.import(&layout, Some(NAME)).await.unwrap();
    let image = store.resolve(NAME).await.unwrap();
    // A mark a new unpack would not have (trees are never written in real use).
    std::fs::write(image.rootfs.join("mark"), "").unwrap();
    let restarted = ImageStore::new(&dir.path().join("data"), Vec::new(), None);
    let again = restarted.resolve(NAME).await.unwrap();
    assert_eq!(again, image);
    assert!(again.rootfs.join("mark").exists(), "unpacked again");
}

/// Removing an image untags it and drops its blobs and its unpacked tree; other images
/// and their trees stay.
#[tokio::test]
async fn remove_drops_image_blobs_and_rootfs() {
    let (dir, layout, store) = setup();
    store.import(&layout, Some(NAME)).await.unwrap();
    let image = store.resolve(NAME).await.unwrap();
    let blobs = dir.path().join("data/images/layout/blobs/sha256");
    assert!(blob_count(&blobs) > 0);
    store.remove(NAME).await.unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(!image.rootfs.exists(), "unpacked tree left behind");
    assert_eq!(blob_count(&blobs), 0);
    let err = store.remove(NAME).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
}

/// Removing one name of a shared digest keeps the tree the other name still uses.
#[tokio::test]
async fn remove_keeps_trees_still_named() {
    let (_dir, layout, store) = setup();
    store.import(&layout, Some("one")).await.unwrap();
    store.import(&layout, Some("two")).await.unwrap();
    let image = store.resolve("one").await.unwrap();
    store.remove("one").await.unwrap();
    assert!(image.rootfs.is_dir());
    assert_eq!(store.resolve("two").await.unwrap().rootfs, image.rootfs);
}

/// How many blobs `dir` holds: none if it is gone; panics if it cannot be read.
fn blob_count(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    }
}

/// With an id map, the tree is unpacked apart, every file owned by the shifted ids.
#[tokio::test]
async fn id_map_shifts_ownership() {
    let (dir, layout, _) = setup();
    let map = IdMap {
        host_id: 200_000,
        size: 65_536,
    };
    let store = ImageStore::new(&dir.path().join("data"), Vec::new(), Some(map));
    store.import(&layout, Some(NAME)).await.unwrap();
    let image = store.resolve(NAME).await.unwrap();
    assert!(image.rootfs.to_str().unwrap().ends_with("-200000-65536"));
    for path in ["", "etc/keep", "bin/app"] {
        let meta = std::fs::metadata(image.rootfs.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (200_000, 200_000), "{path}");
    }
    assert_rootfs(&image);
}

/// A registry that wants credentials refuses a pull without them (a Registry error
/// saying so) and serves one with them, which leave no file behind.
#[tokio::test]
async fn registry_credentials_are_used() {
    let (dir, layout, store) = setup();
    let registry = Registry::start(dir.path(), Some(HTPASSWD));
    let reference = format!("{}/private:v1", registry.host);
    let creds = format!("--dest-creds={REGISTRY_USER}:{REGISTRY_PASSWORD}");
    copy_image(&layout, &format!("docker://{reference}"), &[&creds]);
    match store.pull(&reference).await.unwrap_err() {
        ImageError::Registry { reason, .. } => assert!(reason.contains("unauthorized"), "{reason}"),
        other => panic!("expected a registry error, got {other}"),
    }
    let auth = RegistryAuth {
        host: registry.host.clone(),
        username: Some(REGISTRY_USER.into()),
        password: Some(REGISTRY_PASSWORD.into()),
        insecure: false,
    };
    let store = ImageStore::new(&dir.path().join("data"), vec![auth], None);
    assert_rootfs(&store.resolve(&reference).await.unwrap());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("auth"))
        .collect();
    assert!(left.is_empty(), "credentials left on disk: {left:?}");
}

/// A malformed reference is refused before any tool runs.
#[tokio::test]
async fn bad_reference_is_refused() {
    let (_dir, _layout, store) = setup();
    let err = store.resolve("Not/Valid").await.unwrap_err();
    assert!(matches!(err, ImageError::BadReference(_)), "{err}");
}

/// `edgewake images import`, `list` and `rm` work on the data dir; a failure exits 1
/// with one line.
#[test]
fn cli_imports_lists_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(dir.path());
    let data = dir.path().join("data");
    let edgewake = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgewake"))
            .arg("images")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let imported = edgewake(&["import", layout.to_str().unwrap(), "--name", "cli/app:v3"]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let listed = String::from_utf8(edgewake(&["list"]).stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("REFERENCE")
            && lines[0].contains("DIGEST")
            && lines[0].contains("SIZE")
    );
    assert!(
        lines[1].starts_with("docker.io/cli/app:v3  sha256:"),
        "{listed}"
    );
    assert!(edgewake(&["rm", "cli/app:v3"]).status.success());
    assert_eq!(
        String::from_utf8(edgewake(&["list"]).stdout)
            .unwrap()
            .lines()
            .count(),
        1
    );
    let failed = edgewake(&["rm", "cli/app:v3"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8(failed.stderr).unwrap();
    assert_eq!(stderr, "Error: image not found: docker.io/cli/app:v3\n");
}
