//! Long-lived tunnels to a machine (WebSockets, raw TCP after TLS). A machine stopped on
//! purpose asks its tunnels to close first — WebSockets get a close frame — and waits a
//! moment for them before signalling the process.

use std::time::Duration;
use tokio::sync::watch;

/// How long a stop waits for open tunnels to close after asking them to.
pub const TUNNEL_CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Tunnels {
    /// Bumped to ask every open tunnel to close.
    closing: watch::Sender<u64>,
    open: watch::Sender<usize>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            closing: watch::channel(0).0,
            open: watch::channel(0).0,
        }
    }
}

/// One open tunnel; it is told when to close through `closing`.
pub struct TunnelGuard {
    pub closing: watch::Receiver<u64>,
    open: watch::Sender<usize>,
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n -= 1);
    }
}

impl Tunnels {
    pub fn open(&self) -> TunnelGuard {
        self.open.send_modify(|n| *n += 1);
        let mut closing = self.closing.subscribe();
        closing.mark_unchanged();
        TunnelGuard {
            closing,
            open: self.open.clone(),
        }
    }

    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// Asks every open tunnel to close and waits for them, at most `grace`.
    pub async fn close_all(&self, grace: Duration) {
        if self.count() == 0 {
            return;
        }
        self.closing.send_modify(|generation| *generation += 1);
        let mut open = self.open.subscribe();
        let _ = tokio::time::timeout(grace, open.wait_for(|n| *n == 0)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closing tells every open tunnel and returns once they have gone, on paused time.
    #[tokio::test(start_paused = true)]
    async fn close_all_waits_for_open_tunnels() {
        let tunnels = std::sync::Arc::new(Tunnels::default());
        let mut guard = tunnels.open();
        assert_eq!(tunnels.count(), 1);
        let closer = tokio::spawn({
            let tunnels = tunnels.clone();
            async move { tunnels.close_all(TUNNEL_CLOSE_GRACE).await }
        });
        guard.closing.changed().await.unwrap();
        drop(guard);
        closer.await.unwrap();
        assert_eq!(tunnels.count(), 0);
    }

    /// A tunnel that never closes holds a stop for the grace period only.
    #[tokio::test(start_paused = true)]
    async fn close_all_gives_up_after_grace() {
        let tunnels = Tunnels::default();
        let _stuck = tunnels.open();
        let started = tokio::time::Instant::now();
        tunnels.close_all(TUNNEL_CLOSE_GRACE).await;
        assert_eq!(started.elapsed(), TUNNEL_CLOSE_GRACE);
    }
}
