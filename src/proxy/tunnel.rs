//! Byte tunnels between a client and a machine: upgraded connections (WebSockets) and
//! raw TCP after TLS. A tunnel counts as a request in flight for its whole life, so idle
//! stop never cuts it; when its machine is stopped on purpose it closes, WebSockets with
//! a close frame (1001, going away) sent at a frame boundary.

use crate::machines::activity::InFlight;
use crate::machines::tunnels::{TUNNEL_CLOSE_GRACE, TunnelGuard};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Pumps bytes both ways until either side closes or the machine is being stopped.
pub async fn pump<C, M>(
    client: C,
    machine: M,
    carried: Carried,
    mut guard: TunnelGuard,
    in_flight: InFlight,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    M: AsyncRead + AsyncWrite + Unpin,
{
    let _in_flight = in_flight;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut machine_rx, mut machine_tx) = tokio::io::split(machine);
    let (mut up, mut down) = (vec![0u8; BUFFER_BYTES], vec![0u8; BUFFER_BYTES]);
    let mut frames = FrameBoundary::default();
    let mut closing = false;
    let grace = tokio::time::sleep(TUNNEL_CLOSE_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            read = machine_rx.read(&mut down) => {
                let Ok(n @ 1..) = read else { break };
                if client_tx.write_all(&down[..n]).await.is_err() {
                    break;
                }
                frames.feed(&down[..n]);
                if closing && frames.at_boundary() {
                    break;
                }
            }
            read = client_rx.read(&mut up) => {
                let Ok(n @ 1..) = read else { break };
                if machine_tx.write_all(&up[..n]).await.is_err() {
                    break;
                }
            }
            _ = guard.closing.changed(), if !closing => {
                closing = true;
                grace.as_mut().reset(tokio::time::Instant::now() + TUNNEL_CLOSE_GRACE);
                if carried == Carried::Bytes || frames.at_boundary() {
                    break;
                }
            }
            () = &mut grace, if closing => break,
        }
    }
    if closing && carried == Carried::WebSocket && frames.at_boundary() {
        let _ = client_tx.write_all(&GOING_AWAY).await;
    }
    let _ = client_tx.shutdown().await;
    let _ = machine_tx.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
