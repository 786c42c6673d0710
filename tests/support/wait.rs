//! Waiting on a condition instead of sleeping: look again until it holds, for at most a
//! deadline, then fail naming what was awaited and what was seen last.

use std::fmt::Display;
use std::time::Duration;
use tokio::time::Instant;

/// How long a wait pauses between two looks.
const POLL: Duration = Duration::from_millis(20);

/// Looks with `check` until it gives `Ok`, for at most `within`, and returns its value;
/// past the deadline, panics naming `what` it waited for and the last `Err` it saw.
pub async fn until<T, E: Display>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Looks with `check` until it is true, for at most `within`; past the deadline, panics
/// naming `what` it waited for.
pub async fn until_true(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let checked = async || {
        if check().await {
            Ok(())
        } else {
            Err("not yet")
        }
    };
    until(what, within, checked).await
}

/// [`until_true`] for code that is not async (it blocks the thread between looks).
pub fn until_true_blocking(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Reads (and ignores) whatever the peer sends, never answering, until it closes the
/// connection; fails if it has not within `within`.
pub async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let closing = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closing)
        .await
        .expect("the connection was closed");
}
