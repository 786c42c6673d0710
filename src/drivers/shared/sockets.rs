//! Whether what answers at a machine's address is the machine: a socket listening
//! there that one of the machine's own processes holds. Another edgewake's machine on
//! the same address, or a dying run of this one, must not pass the readiness probe.

use super::procfs;
use crate::drivers::Instance;
use crate::listening::{self, Listener};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long a probe waits after finding a stranger's socket at the address before it
/// says no: checking the process tree costs more than a connect, and what answers is
/// not going to be the machine's own within the next probe interval anyway.
const STRANGER_RECHECK: Duration = Duration::from_millis(100);

/// The readiness probe of a driver whose machine is the process tree under the
/// instance's pid: something accepts at `addr`, and it is the machine.
pub async fn machine_accepts(instance: &Instance, addr: SocketAddr) -> bool {
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        return false;
    }
    let root = instance.pid;
    let ours = tokio::task::spawn_blocking(move || tree_listens_at(root, addr))
        .await
        .unwrap_or(false);
    if !ours {
        tracing::debug!(%addr, pid = root, "a socket that is not the machine's answers");
        tokio::time::sleep(STRANGER_RECHECK).await;
    }
    ours
}

/// Whether a process of the tree under `root` holds a socket listening where a
/// connection to `addr` arrives, in whichever network namespace that process is.
pub fn tree_listens_at(root: u32, addr: SocketAddr) -> bool {
    let mut tree = procfs::descendants(root);
    tree.push(root);
    let held: HashSet<u64> = tree.iter().flat_map(|pid| socket_inodes(*pid)).collect();
    if held.is_empty() {
        return false;
    }
    let own = procfs::namespace("self", "net");
    namespaces(&tree).into_iter().any(|(ns, pid)| {
        let listeners: Vec<Listener> = if Some(&ns) == own.as_ref() {
            listening::listeners_here()
        } else {
            listening::listeners(&pid.to_string())
        };
        listeners
            .iter()
            .any(|l| l.answers(addr) && held.contains(&l.inode))
    })
}

/// One process of the tree in each network namespace the tree spans.
fn namespaces(tree: &[u32]) -> HashMap<PathBuf, u32> {
    tree.iter()
        .filter_map(|pid| Some((procfs::namespace(&pid.to_string(), "net")?, *pid)))
        .collect()
}

/// The inodes of the sockets a process holds (`/proc/<pid>/fd/N -> socket:[inode]`).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let text = target.to_str()?;
        text.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};

    /// A listening socket a child holds is found as the child's; a socket only this
    /// process holds is not; a port nobody listens on is no one's.
    #[test]
    fn finds_the_trees_own_listener() {
        let stranger = std::net::TcpListener::bind("127.62.0.7:0").unwrap();
        let inherited = std::net::TcpListener::bind("127.62.0.8:0").unwrap();
        // The child inherits this one (std opens sockets close-on-exec).
        fcntl(&inherited, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let own = inherited.local_addr().unwrap();
        assert!(tree_listens_at(child.id(), own));
        assert!(!tree_listens_at(child.id(), stranger.local_addr().unwrap()));
        let nobody = SocketAddr::new(own.ip(), own.port().wrapping_add(1));
        assert!(!tree_listens_at(child.id(), nobody));
        child.kill().unwrap();
        let _ = child.wait();
    }
}
