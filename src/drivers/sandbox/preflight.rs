//! What the sandbox needs from the host, checked before edgewake serves: every missing
//! piece is named at once, with the Debian package that provides it.

use crate::config::SandboxConfig;
use std::path::{Path, PathBuf};

/// Tools the sandbox runs, and where Debian has them.
const TOOLS: &[(&str, &str)] = &[
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("nft", "nftables"),
];

/// What the host offers, as far as the driver cares.
#[derive(Debug)]
pub struct Host {
    /// The OCI runtime's binary.
    pub runtime: PathBuf,
    /// Whether swap can be limited with memory (cgroup v2, or v1 with swap accounting).
    pub limit_swap: bool,
    /// What works but should be known (an old runtime).
    pub warnings: Vec<String>,
}

/// The first runc releases of each line with the November 2025 container-escape fixes
/// (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881).
const PATCHED_RUNC: &[(u32, u32, u32)] = &[(1, 2, 8), (1, 3, 3), (1, 4, 0)];

/// A warning when the runtime is a runc older than the escape fixes.
fn runtime_warning(runtime: &Path) -> Option<String> {
    let output = std::process::Command::new(runtime)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .next()?
        .strip_prefix("runc version ")?
        .to_string();
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect();
    let [major, minor, patch] = numbers[..] else {
        return None;
    };
    let patched = PATCHED_RUNC
        .iter()
        .any(|(ma, mi, pa)| major == *ma && minor == *mi && patch >= *pa)
        || (major, minor) > (1, 4);
    (!patched).then(|| {
        format!(
            "runc {version} predates the fixes for CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 \
             (runc 1.2.8, 1.3.3, 1.4.0) unless your distribution backported them: check before running hostile code"
        )
    })
}

/// What the host lacks for the sandbox, each with how to get it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error(
        "edgewake runs as root for the sandbox driver (it mounts overlays and makes network interfaces)"
    )]
    Root,
    #[error("the OCI runtime `{0}` is not installed (Debian: apt-get install runc)")]
    Runtime(String),
    #[error("`{tool}` is not installed (Debian: apt-get install {package})")]
    Tool {
        tool: &'static str,
        package: &'static str,
    },
    #[error(
        "the machine init `{0}` is not installed (Debian: apt-get install tini; or set sandbox.init = \"\")"
    )]
    Init(String),
    #[error("the kernel has no overlay file system (modprobe overlay)")]
    Overlay,
    #[error("the cgroup controller `{0}` is not mounted")]
    Controller(&'static str),
    #[error(
        "user namespaces are disabled (sysctl user.max_user_namespaces); enable them or set sandbox.user_namespace = false"
    )]
    UserNamespaces,
}

/// Every piece the host lacks, found at once (fixing one at a time would take as many
/// restarts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sandbox driver cannot run here:{}", list(.0))]
pub struct Unfit(pub Vec<Missing>);

fn list(missing: &[Missing]) -> String {
    missing.iter().map(|m| format!("\n  - {m}")).collect()
}

/// Checks the host, listing every problem in one error.
pub fn check(config: &SandboxConfig) -> Result<Host, Unfit> {
    let runtime = find_program(&config.runtime);
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push(Missing::Root);
    }
    if runtime.is_none() {
        missing.push(Missing::Runtime(config.runtime.clone()));
    }
    missing.extend(missing_tools());
    if !config.init.is_empty() && !Path::new(&config.init).is_file() {
        missing.push(Missing::Init(config.init.clone()));
    }
    missing.extend(missing_kernel_parts(config.user_namespace));
    match runtime {
        Some(runtime) if missing.is_empty() => Ok(Host {
            warnings: runtime_warning(&runtime).into_iter().collect(),
            runtime,
            limit_swap: swap_accounting(),
        }),
        _ => Err(Unfit(missing)),
    }
}

fn missing_tools() -> impl Iterator<Item = Missing> {
    TOOLS
        .iter()
        .filter(|(tool, _)| find_program(tool).is_none())
        .map(|&(tool, package)| Missing::Tool { tool, package })
}

/// The overlay file system, the cgroup controllers and (when used) user namespaces.
fn missing_kernel_parts(user_namespace: bool) -> Vec<Missing> {
    let mut missing = Vec::new();
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        missing.push(Missing::Overlay);
    }
    for controller in ["memory", "pids", "cpu"] {
        if !has_controller(controller) {
            missing.push(Missing::Controller(controller));
        }
    }
    if user_namespace && !user_namespaces_allowed() {
        missing.push(Missing::UserNamespaces);
    }
    missing
}

/// `name` if it is a path to a file, else the first match on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn has_controller(name: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(name).is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|n| n == name))
}

fn user_namespaces_allowed() -> bool {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

fn swap_accounting() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime that does not exist is named, with the package to install.
    #[test]
    fn names_a_missing_runtime() {
        let config = SandboxConfig {
            runtime: "/nonexistent/runc-nope".into(),
            ..SandboxConfig::default()
        };
        let unfit = check(&config).unwrap_err();
        assert!(
            unfit
                .0
                .contains(&Missing::Runtime("/nonexistent/runc-nope".into())),
            "{unfit}"
        );
        let message = unfit.to_string();
        assert!(
            message.starts_with("the sandbox driver cannot run here:\n  - "),
            "{message}"
        );
        assert!(
            message.contains("`/nonexistent/runc-nope` is not installed"),
            "{message}"
        );
        assert!(message.contains("apt-get install runc"), "{message}");
    }

    /// Programs are found on PATH or by path.
    #[test]
    fn finds_programs() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
    }
}
