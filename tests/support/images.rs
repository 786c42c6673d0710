//! Test helpers for the image store: test images built with umoci (no Docker), archives
//! made from them with skopeo, and a real `docker-registry` on a free loopback port.

use super::{free_port, wait};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The tag the test layout gives its image.
pub const LAYOUT_TAG: &str = "v1";
/// What the test image's `/etc/keep` holds (kept through both layers).
pub const KEPT_TEXT: &str = "kept\n";
/// Deleted by the test image's second layer (a whiteout).
pub const DELETED_FILE: &str = "etc/gone";
pub const ENTRYPOINT: &str = "/bin/app";
/// How long a registry may take to listen.
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// User `edgewake`, password `s3cret`, bcrypt (cost 4, fast), as `htpasswd -Bbn` writes.
pub const HTPASSWD: &str = "edgewake:$2b$04$r7ac793y/ny5eIN6m.qn6u/Y.J3ZP2.c9T9KmL/FUCfepEOmHKlkq";
pub const REGISTRY_USER: &str = "edgewake";
pub const REGISTRY_PASSWORD: &str = "s3cret";

/// Runs a tool, panicking with its stderr if it fails; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An OCI layout at `dir/layout` holding one image tagged `v1`: layer one adds
/// `/etc/keep`, `/etc/gone` and an executable `/bin/app`; layer two deletes `/etc/gone`;
/// the config sets entrypoint, cmd, env, working dir and user.
pub fn build_image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs-src");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("etc/keep"), KEPT_TEXT).unwrap();
    std::fs::write(root.join(DELETED_FILE), "gone\n").unwrap();
    let app = root.join("bin/app");
    std::fs::write(&app, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dir.join("layout");
    let config = [
        "--config.entrypoint=/bin/app",
        "--config.cmd=serve",
        "--config.cmd=--port=8080",
        "--config.env=FOO=bar",
        "--config.env=PATH=/bin",
        "--config.workingdir=/srv",
        "--config.user=1000:1000",
    ];
    pack(&root, &layout, &["/etc/gone"], &config);
    layout
}

/// Packs `root` as the one image (tagged `v1`) of a new OCI layout at `layout`, with
/// umoci: a layer of `root`, then a layer deleting each of `deleted`, then `config`
/// (umoci's `--config.*` flags).
pub fn pack(root: &Path, layout: &Path, deleted: &[&str], config: &[&str]) {
    let image = format!("{}:{LAYOUT_TAG}", layout.display());
    run("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["insert", "--image", &image, root.to_str().unwrap(), "/"],
    );
    for path in deleted {
        run("umoci", &["insert", "--image", &image, "--whiteout", path]);
    }
    let mut args = vec!["config", "--image", &image];
    args.extend(config);
    run("umoci", &args);
}

/// `skopeo copy` from the test layout to `destination` (any skopeo image name), with
/// extra skopeo flags (`--dest-creds=…`).
pub fn copy_image(layout: &Path, destination: &str, flags: &[&str]) {
    let source = format!("oci:{}:{LAYOUT_TAG}", layout.display());
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    args.extend(flags);
    args.extend([source.as_str(), destination]);
    run("skopeo", &args);
}

/// A `docker-registry` (distribution v2) on loopback, with its own storage; killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`, as references name it.
    pub host: String,
    log: PathBuf,
    child: Child,
}

impl Registry {
    /// Starts one in `dir`; with `htpasswd`, pulls and pushes need its credentials.
    pub fn start(dir: &Path, htpasswd: Option<&str>) -> Registry {
        let host = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(&config, registry_config(dir, &host, htpasswd)).unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry is installed");
        wait_listening(host.parse().unwrap());
        Registry { host, log, child }
    }

    /// How many times the manifest of `repo:tag` was fetched (from the access log).
    pub fn manifest_gets(&self, repo: &str, tag: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/manifests/{tag} HTTP/1.1\" 200");
        let log = std::fs::read_to_string(&self.log).unwrap();
        log.lines().filter(|l| l.contains(&needle)).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_config(dir: &Path, host: &str, htpasswd: Option<&str>) -> String {
    let storage = dir.join("registry-data");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
        storage.display()
    );
    if let Some(line) = htpasswd {
        let file = dir.join("htpasswd");
        std::fs::write(&file, format!("{line}\n")).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: edgewake-test\n    path: {}\n",
            file.display()
        ));
    }
    config
}

fn wait_listening(addr: SocketAddr) {
    let what = format!("docker-registry to listen on {addr}");
    wait::until_true_blocking(&what, REGISTRY_START_TIMEOUT, || {
        TcpStream::connect(addr).is_ok()
    });
}
