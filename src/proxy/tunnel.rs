//! Byte tunnels between a client and a machine: upgraded connections (WebSockets) and
//! raw TCP after TLS. A tunnel counts as a request in flight for its whole life, so idle
//! stop never cuts it; when its machine is stopped on purpose it closes, WebSockets with
//! a close frame (1001, going away) sent at a frame boundary.

use crate::machines::activity::InFlight;
use crate::machines::tunnels::{TUNNEL_CLOSE_GRACE, TunnelGuard};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// A server-to-client close frame: FIN + opcode 8, 2-byte payload, status 1001.
const GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];
const BUFFER_BYTES: usize = 16 * 1024;

/// Follows WebSocket frame boundaries in the machine-to-client byte stream, so a close
/// frame is never written into the middle of another frame.
#[derive(Debug, Default)]
pub struct FrameBoundary {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
}

impl FrameBoundary {
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let take = data
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= take as u64;
                data = &data[take..];
                continue;
            }
            self.header[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if let Some(len) = self.header_complete() {
                self.payload_left = len;
                self.have = 0;
            }
        }
    }

    /// The payload length, once the whole header has arrived.
    fn header_complete(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let (masked, len7) = (self.header[1] & 0x80 != 0, self.header[1] & 0x7f);
        let extended = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let needed = 2 + extended + if masked { 4 } else { 0 };
        if self.have < needed {
            return None;
        }
        let len = match extended {
            0 => u64::from(len7),
            _ => self.header[2..2 + extended]
                .iter()
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
        };
        Some(len)
    }
}

/// What a tunnel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    WebSocket,
    Bytes,
}

/// Pumps bytes both ways, each direction on its own so a slow reader on one side never
/// stalls the other. The client's end of input is passed on as a half-close and the
/// machine's answer still flows back; the machine closing ends the tunnel. When the
/// machine is being stopped, the tunnel closes (a WebSocket with a close frame at a frame
/// boundary), and whatever is still stuck after the grace period is dropped.
pub async fn pump<C, M>(
    client: C,
    machine: M,
    carried: Carried,
    guard: TunnelGuard,
    in_flight: InFlight,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    M: AsyncRead + AsyncWrite + Unpin,
{
    let _in_flight = in_flight;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut machine_rx, mut machine_tx) = tokio::io::split(machine);
    let up = async {
        let _ = tokio::io::copy(&mut client_rx, &mut machine_tx).await;
        let _ = machine_tx.shutdown().await;
    };
    let down = machine_to_client(
        &mut machine_rx,
        &mut client_tx,
        carried,
        guard.closing.clone(),
    );
    let forced = async {
        let mut closing = guard.closing.clone();
        let _ = closing.changed().await;
        tokio::time::sleep(TUNNEL_CLOSE_GRACE).await;
    };
    tokio::pin!(up, down, forced);
    tokio::select! {
        () = &mut down => {}
        () = &mut up => {
            tokio::select! {
                () = &mut down => {}
                () = &mut forced => {}
            }
        }
        () = &mut forced => {}
    }
}

/// Copies the machine's bytes to the client, tracking WebSocket frames so a requested
/// close lands between frames.
async fn machine_to_client<R, W>(
    machine: &mut R,
    client: &mut W,
    carried: Carried,
    mut closing: watch::Receiver<u64>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut frames = FrameBoundary::default();
    let mut stopping = false;
    loop {
        if stopping && (carried == Carried::Bytes || frames.at_boundary()) {
            if carried == Carried::WebSocket {
                let _ = client.write_all(&GOING_AWAY).await;
            }
            break;
        }
        tokio::select! {
            read = machine.read(&mut buffer) => {
                let Ok(n @ 1..) = read else { break };
                if client.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
                frames.feed(&buffer[..n]);
            }
            _ = closing.changed(), if !stopping => stopping = true,
        }
    }
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that stops reading cannot hold a tunnel open past the close grace: the
    /// pump ends and releases its in-flight count (paused time).
    #[tokio::test(start_paused = true)]
    async fn stuck_client_is_dropped_after_the_grace() {
        use crate::machines::activity::{Activity, InFlight};
        use crate::machines::tunnels::Tunnels;
        use std::sync::Arc;
        let (client, _client_far) = tokio::io::duplex(64); // the far end never reads
        let (machine, mut machine_far) = tokio::io::duplex(64);
        let (tunnels, activity) = (Tunnels::default(), Arc::new(Activity::new()));
        let pump = pump(
            client,
            machine,
            Carried::WebSocket,
            tunnels.open(),
            InFlight::enter(&activity),
        );
        let flood = async move {
            let frame = [0x82u8, 8, 1, 2, 3, 4, 5, 6, 7, 8];
            while machine_far.write_all(&frame).await.is_ok() {}
        };
        let stop = async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            tunnels.close_all(TUNNEL_CLOSE_GRACE).await;
        };
        tokio::select! {
            _ = async { tokio::join!(pump, stop) } => {}
            () = flood => panic!("the machine side closed first"),
        }
        assert_eq!(activity.in_flight(), 0);
        assert_eq!(tunnels.count(), 0);
    }

    /// Boundaries are found across short, 16-bit and masked frames fed in pieces.
    #[test]
    fn tracks_frame_boundaries() {
        let mut frames = FrameBoundary::default();
        frames.feed(&[0x81, 0x03, b'a', b'b']);
        assert!(!frames.at_boundary(), "one payload byte still to come");
        frames.feed(b"c");
        assert!(frames.at_boundary());
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        frames.feed(&long[..3]);
        assert!(!frames.at_boundary(), "inside the header");
        frames.feed(&long[3..]);
        assert!(frames.at_boundary());
        frames.feed(&[0x81, 0x82, 1, 2, 3, 4, b'h', b'i']);
        assert!(frames.at_boundary(), "masked frame with its key");
    }
}
