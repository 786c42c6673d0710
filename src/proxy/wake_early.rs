//! Waking early: the TLS ClientHello names the host (SNI) before the handshake, the
//! request and its body; for apps that ask (`http_options.wake_early`, or the
//! operator's `wake.early`), the wake begins right then. The ClientHello is only
//! peeked at (rustls still reads all of it), within a short bound, and read only as
//! far as the server name.

use std::time::Duration;
use tokio::net::TcpStream;

/// How long a connection's first bytes are awaited for the peek (the handshake's own
/// timeout still bounds the connection).
pub const PEEK_TIMEOUT: Duration = Duration::from_millis(500);
/// Most bytes peeked: a ClientHello naming its host fits in far fewer.
const PEEK_BYTES: usize = 2048;

/// The server name in the ClientHello at the start of `stream`, if it has come.
pub async fn peek_server_name(stream: &TcpStream) -> Option<String> {
    let mut buf = [0u8; PEEK_BYTES];
    let n = tokio::time::timeout(PEEK_TIMEOUT, stream.peek(&mut buf))
        .await
        .ok()?
        .ok()?;
    server_name(&buf[..n])
}

/// Reads the SNI host name out of a TLS record holding a ClientHello (RFC 8446 §4.1.2,
/// RFC 6066 §3); `None` for anything else or anything cut short.
pub fn server_name(record: &[u8]) -> Option<String> {
    let mut r = Reader(record);
    (r.u8()? == 22).then_some(())?; // handshake record
    r.skip(2)?; // record version
    // The record may hold only the start of a long ClientHello: read what is there.
    let declared = r.u16()? as usize;
    let mut hello = Reader(r.take(declared).unwrap_or(r.0));
    (hello.u8()? == 1).then_some(())?; // ClientHello
    hello.skip(3 + 2 + 32)?; // length, version, random
    hello.block8()?; // session id
    hello.block16()?; // cipher suites
    hello.block8()?; // compression methods
    let mut extensions = Reader(hello.block16()?);
    while let Some(kind) = extensions.u16() {
        let data = extensions.block16()?;
        if kind == 0 {
            return host_name(data);
        }
    }
    None
}

/// The first `host_name` entry of a server_name extension.
fn host_name(data: &[u8]) -> Option<String> {
    let mut names = Reader(Reader(data).block16()?);
    while let Some(kind) = names.u8() {
        let name = names.block16()?;
        if kind == 0 {
            let name = std::str::from_utf8(name).ok()?;
            return Some(name.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Bytes after a one-byte length.
    fn block8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// Bytes after a two-byte length.
    fn block16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it names its host; other bytes name nothing.
    #[test]
    fn reads_sni_from_a_real_client_hello() {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = "Shop.localhost".try_into().unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        assert_eq!(server_name(&hello).as_deref(), Some("shop.localhost"));
        assert_eq!(server_name(&hello[..40]), None, "cut short");
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), None);
    }
}
