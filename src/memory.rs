//! Memory the allocator keeps after a burst. glibc keeps what is freed in its arenas
//! (one per busy thread) and gives back only the top of each: measured with 5,000
//! client connections (`benches/memory.sh`), RSS stayed at ~240 MB after they had all
//! closed and crept to ~340 MB over five more bursts, while `malloc_trim(0)` brought it
//! back to 16 MB. So a task looks at the free memory the allocator holds every
//! `TRIM_CHECK_INTERVAL` and hands it back to the system once it passes
//! `TRIM_ABOVE_BYTES`; under steady load little is free and nothing is done.
//!
//! The one module allowed `unsafe` (lib.rs denies it everywhere else): two calls into
//! glibc that take no pointers and have no preconditions.
#![allow(unsafe_code)]

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the allocator's free memory is looked at.
pub const TRIM_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Free memory the allocator may keep before it is handed back.
pub const TRIM_ABOVE_BYTES: usize = 32 * 1024 * 1024;

/// Bytes the allocator holds free (in all its arenas), where it can say.
pub fn free_bytes() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads the allocator's state
        // (under its locks); it returns a plain struct by value.
        let info = unsafe { nix::libc::mallinfo2() };
        Some(info.fordblks)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Hands the allocator's free pages back to the system; whether any were.
pub fn give_back() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a byte count (0: keep no padding) and only releases
        // pages no allocation uses (madvise), under the allocator's own locks.
        unsafe { nix::libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Until cancelled: every `TRIM_CHECK_INTERVAL`, gives free memory back when the
/// allocator holds more than `TRIM_ABOVE_BYTES` of it. Both calls walk the arenas, so
/// they run on the blocking pool, never on a worker serving connections.
pub async fn give_back_after_bursts(cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(TRIM_CHECK_INTERVAL) => {}
        }
        let trimmed = tokio::task::spawn_blocking(|| {
            let free = free_bytes()?;
            (free > TRIM_ABOVE_BYTES && give_back()).then_some(free)
        })
        .await;
        if let Ok(Some(free)) = trimmed {
            tracing::debug!(
                free_mb = free >> 20,
                "gave the allocator's free memory back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_bytes() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * 1024
    }

    /// 128 MB freed in small blocks around a few kept ones (what a closed burst of
    /// connections leaves) is counted free, and giving it back returns most of it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn memory_freed_by_a_burst_is_given_back() {
        let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 16 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter().step_by(64).cloned().collect();
        drop(blocks);
        assert!(free_bytes().unwrap() >= 64 << 20);
        let before = rss_bytes();
        assert!(give_back());
        let after = rss_bytes();
        assert!(before - after >= 64 << 20, "RSS {before} -> {after}");
        drop(kept);
    }
}
