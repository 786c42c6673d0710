//! Sandbox test helpers: an OCI image built here (the bundled runtime, the libraries it
//! needs and busybox, packed with umoci), a `docker-registry` on loopback to pull it
//! from, and configs that run edgewake with the sandbox driver.

use super::bin_dir;
use super::images::{LAYOUT_TAG, Registry, pack, run};
use edgewake::config::Config;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// An OCI layout holding the test image (built once per test binary): the bundled
/// runtime as entrypoint, its shared libraries, and busybox for hostile commands.
pub fn test_layout() -> &'static Path {
    static LAYOUT: OnceLock<tempfile::TempDir> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            build_layout(dir.path());
            dir
        })
        .path()
        .join("layout")
        .leak()
}

fn build_layout(dir: &Path) {
    let root = dir.join("rootfs");
    for sub in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let runtime = bin_dir().join("edgewake-functions");
    let target = root.join("bin/edgewake-functions");
    run(
        "strip",
        &["-o", target.to_str().unwrap(), runtime.to_str().unwrap()],
    );
    copy_libraries(&runtime, &root);
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "echo", "nc", "ps", "ls", "head", "tr", "sleep", "id", "wget",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let config = [
        "--config.entrypoint=/bin/edgewake-functions",
        "--config.env=IMAGE_ENV=from-image",
        "--config.workingdir=/tmp",
    ];
    pack(&root, &dir.join("layout"), &[], &config);
}

/// Copies the shared libraries `binary` loads (as `ldd` lists them) into `root`.
fn copy_libraries(binary: &Path, root: &Path) {
    for line in run("ldd", &[binary.to_str().unwrap()]).lines() {
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(PathBuf::from);
        if let Some(path) = path {
            let inside = root.join(path.strip_prefix("/").unwrap());
            std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
            std::fs::copy(&path, &inside).unwrap();
        }
    }
}

/// Pushes the test image to `registry` as `repo:tag`; returns its reference.
pub fn push_test_image(registry: &Registry, repo: &str, tag: &str) -> String {
    let reference = format!("{}/{repo}:{tag}", registry.host);
    let source = format!("oci:{}:{LAYOUT_TAG}", test_layout().display());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &source,
            &format!("docker://{reference}"),
        ],
    );
    reference
}

/// A private /24 for one test's machines: concurrent tests (one process) take
/// consecutive blocks from a random start, so they never share addresses.
pub fn random_sandbox_network() -> String {
    static NEXT: OnceLock<std::sync::atomic::AtomicU8> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let [start] = edgewake::ids::random_bytes::<1>();
        std::sync::atomic::AtomicU8::new(start)
    });
    let block = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    super::drawn(format!("172.30.{block}.0/24"))
}

/// Runs machines with the sandbox driver, in their own network, with small limits.
pub fn sandboxed(config: &mut Config) {
    config.machines.driver = edgewake::config::DriverKind::Sandbox;
    config.sandbox.network = random_sandbox_network().parse().unwrap();
    config.sandbox.pids_limit = 64;
}

/// Imports the test image into `data_dir`'s store as `reference`, with the CLI.
pub fn import_test_image(data_dir: &Path, reference: &str) {
    run(
        env!("CARGO_BIN_EXE_edgewake"),
        &[
            "images",
            "import",
            test_layout().to_str().unwrap(),
            "--name",
            reference,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
    );
}
