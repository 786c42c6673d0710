//! The host's processes as `/proc` shows them: all of them, a process's descendants,
//! those carrying a mark in their environment (and waiting for those to be gone).

/// Every process on the host, by pid.
pub fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

/// Every live descendant of `pid` (from each process's parent in `/proc`), deepest last.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = processes()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The namespace of `kind` (`net`, `pid`…) a process (`self`, or a pid) is in, as the
/// kernel names it (`net:[4026531840]`): equal names, the same namespace.
pub fn namespace(pid: &str, kind: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

/// A process's parent, from `/proc/<pid>/stat` (the field after the command's `)`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Live processes whose environment holds `entry` (`KEY=VALUE`) exactly: a mark that
/// children inherit, so it finds what a process started even once reparented.
pub fn with_env(entry: &str) -> Vec<u32> {
    processes()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == entry.as_bytes()))
        })
        .collect()
}

/// How often a wait for processes to be gone looks again.
const GONE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Waits until no live process holds `entry` in its environment (a zombie holds none:
/// its memory, sockets included, is gone), for at most `within`; says whether none do.
pub async fn until_none_with_env(entry: &str, within: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if with_env(entry).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(GONE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Descendants are found through their parents.
    #[test]
    fn finds_descendants() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5; :"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let found = descendants(child.id());
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(found.len(), 2, "{found:?}");
    }

    /// A mark in the environment finds the process and its children, nothing else.
    #[test]
    fn finds_processes_by_their_mark() {
        let mark = format!("EDGEWAKE_TEST_MARK={}", std::process::id());
        let (key, value) = mark.split_once('=').unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5; :"])
            .env(key, value)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let found = with_env(&mark);
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.contains(&child.id()));
    }
}
