//! The PROXY protocol (HAProxy's v1 text and v2 binary headers), read from trusted
//! load balancers in front of the edge so the client's own address is known.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Longest header accepted (v2 with TLVs); a longer one is refused.
const MAX_HEADER: usize = 4096;
/// How long a trusted peer may take to send the header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("connection closed or timed out before the PROXY header was complete")]
    Incomplete,
}

/// What a header says: the client's address, or `None` for a LOCAL/UNKNOWN connection
/// (a health check from the balancer itself), which keeps the peer's address.
pub type Source = Option<SocketAddr>;

/// How long the header starting `bytes` is, as soon as `bytes` say: a v1 header at its
/// CRLF, a v2 header from its first 16 bytes (which give its length). `None`: `bytes` may
/// still become a header, send more.
pub fn header_len(bytes: &[u8]) -> Result<Option<usize>, ProxyHeaderError> {
    if bytes.starts_with(b"PROXY ") {
        return v1_len(bytes);
    }
    if bytes.len() >= 16 && bytes[..12] == V2_SIGNATURE {
        let len = u16::from_be_bytes([bytes[14], bytes[15]]) as usize;
        return Ok(Some(16 + len));
    }
    let v2_start = V2_SIGNATURE.starts_with(&bytes[..bytes.len().min(12)]);
    if v2_start || b"PROXY ".starts_with(bytes) {
        Ok(None)
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

/// A v1 header ends at its CRLF, whatever its length (`PROXY UNKNOWN\r\n` is 15 bytes).
fn v1_len(bytes: &[u8]) -> Result<Option<usize>, ProxyHeaderError> {
    match bytes.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(end + 2)),
        None if bytes.len() >= V1_MAX => Err(ProxyHeaderError::Malformed(
            "v1 header longer than 107 bytes",
        )),
        None => Ok(None),
    }
}

/// Parses a complete header (as measured by `header_len`).
pub fn parse(header: &[u8]) -> Result<Source, ProxyHeaderError> {
    if header.starts_with(&V2_SIGNATURE) {
        parse_v2(header)
    } else {
        parse_v1(header)
    }
}

fn parse_v1(header: &[u8]) -> Result<Source, ProxyHeaderError> {
    let text = std::str::from_utf8(header)
        .map_err(|_| ProxyHeaderError::Malformed("v1 header is not text"))?;
    let fields: Vec<&str> = text.trim_end_matches("\r\n").split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            src,
            _dst,
            sport,
            _dport,
        ] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 source address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ProxyHeaderError::Malformed("v1 address of another family"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyHeaderError::Malformed("v1 fields")),
    }
}

fn parse_v2(header: &[u8]) -> Result<Source, ProxyHeaderError> {
    if header.len() < 16 {
        return Err(ProxyHeaderError::Malformed(
            "v2 header shorter than 16 bytes",
        ));
    }
    let (version, command) = (header[12] >> 4, header[12] & 0x0f);
    if version != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    if command == 0 {
        return Ok(None); // LOCAL
    }
    let body = &header[16..];
    match header[13] >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            )))
        }
        2 if body.len() >= 36 => {
            let octets: [u8; 16] = body[..16].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port)))
        }
        0 => Ok(None), // UNSPEC
        _ => Err(ProxyHeaderError::Malformed("v2 address block")),
    }
}

/// Reads the header off a fresh connection, leaving everything after it unread.
pub async fn read_header(stream: &mut TcpStream) -> Result<Source, ProxyHeaderError> {
    // The whole header, peeking and reading, within one deadline.
    tokio::time::timeout(HEADER_TIMEOUT, async {
        let len = header_length(stream).await?;
        let mut header = vec![0u8; len];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|_| ProxyHeaderError::Incomplete)?;
        parse(&header)
    })
    .await
    .map_err(|_| ProxyHeaderError::Incomplete)?
}

/// Peeks until the header's length is known, without consuming anything.
async fn header_length(stream: &mut TcpStream) -> Result<usize, ProxyHeaderError> {
    let mut peeked = vec![0u8; 16];
    loop {
        let n = stream
            .peek(&mut peeked)
            .await
            .map_err(|_| ProxyHeaderError::Incomplete)?;
        if let Some(len) = header_len(&peeked[..n])? {
            return if len <= MAX_HEADER {
                Ok(len)
            } else {
                Err(ProxyHeaderError::Malformed("header too long"))
            };
        }
        if n == 0 {
            return Err(ProxyHeaderError::Incomplete);
        }
        if n == peeked.len() {
            peeked.resize(peeked.len() * 2, 0);
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await; // the rest is on its way
        }
    }
}

/// Writes a v2 header for `source` → `destination` (tests and tools).
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, PROXY
    let mut body = Vec::new();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            header.push(0x11);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        (s, d) => {
            header.push(0x21);
            body.extend_from_slice(&to_v6(s).octets());
            body.extend_from_slice(&to_v6(d).octets());
        }
    }
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(&body);
    header
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 TCP4 header gives the client's address and is measured to its CRLF.
    #[test]
    fn parses_v1() {
        let bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let len = header_len(bytes).unwrap().unwrap();
        assert_eq!(&bytes[len..len + 3], b"GET");
        assert_eq!(
            parse(&bytes[..len]).unwrap(),
            Some("203.0.113.7:56324".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
    }

    /// v2 headers round-trip for IPv4 and IPv6 sources.
    #[test]
    fn parses_v2() {
        for source in ["198.51.100.9:4000", "[2001:db8::7]:4001"] {
            let source: SocketAddr = source.parse().unwrap();
            let header = v2_header(source, "192.0.2.1:443".parse().unwrap());
            assert_eq!(header_len(&header).unwrap(), Some(header.len()));
            assert_eq!(parse(&header).unwrap(), Some(source));
        }
    }

    /// Plain HTTP is not a header; a partial header asks for more bytes.
    #[test]
    fn recognises_missing_and_partial_headers() {
        assert_eq!(
            header_len(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(header_len(b"PROXY TCP4 1.2."), Ok(None));
        assert_eq!(header_len(&V2_SIGNATURE[..5]), Ok(None));
        let v2 = v2_header(
            "198.51.100.9:4000".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        );
        assert_eq!(
            header_len(&v2[..13]),
            Ok(None),
            "a v2 header split after its signature"
        );
        assert!(parse(b"PROXY TCP4 nonsense\r\n").is_err());
    }

    /// Any prefix of a header asks for more, anything else is no header; the first
    /// CRLF ends a v1 header even when the request follows in the same segment.
    #[test]
    fn prefixes_and_ends() {
        assert_eq!(header_len(b"PROX"), Ok(None));
        assert_eq!(header_len(b"GET"), Err(ProxyHeaderError::Missing));
        assert_eq!(header_len(b"PROXY UNKNOWN\r\nG"), Ok(Some(15)));
    }

    /// A v1 header is at most 107 bytes: one that long is read, a longer one (ended
    /// or not) is malformed.
    #[test]
    fn v1_is_at_most_107_bytes() {
        let line = |len: usize, end: &str| {
            let mut line = format!("PROXY UNKNOWN {}", "x".repeat(len - 14 - end.len()));
            line.push_str(end);
            assert_eq!(line.len(), len);
            line
        };
        assert_eq!(header_len(line(107, "\r\n").as_bytes()), Ok(Some(107)));
        for too_long in [line(108, "\r\n"), line(107, "")] {
            assert!(
                matches!(
                    header_len(too_long.as_bytes()),
                    Err(ProxyHeaderError::Malformed(_))
                ),
                "{too_long}"
            );
        }
    }

    /// A v2 header with `command` (low nibble of byte 12) and `family` (high nibble of
    /// byte 13), around `body`.
    fn v2_with(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family << 4 | 1]);
        header.extend((body.len() as u16).to_be_bytes());
        header.extend(body);
        header
    }

    /// LOCAL (the balancer's own health check) and UNSPEC keep the peer's address; a
    /// short address block or another version is malformed.
    #[test]
    fn v2_local_unspec_and_malformed() {
        let ipv4 = [198, 51, 100, 9, 192, 0, 2, 1, 15, 160, 1, 187];
        assert_eq!(
            parse(&v2_with(1, 1, &ipv4)),
            Ok(Some("198.51.100.9:4000".parse().unwrap()))
        );
        assert_eq!(parse(&v2_with(0, 1, &ipv4)), Ok(None), "LOCAL");
        assert_eq!(parse(&v2_with(1, 0, &[])), Ok(None), "UNSPEC");
        assert!(parse(&v2_with(1, 1, &ipv4[..8])).is_err(), "short IPv4");
        assert!(parse(&v2_with(1, 2, &[0; 20])).is_err(), "short IPv6");
        let mut v1 = v2_with(1, 1, &ipv4);
        v1[12] = 0x11;
        assert!(parse(&v1).is_err(), "version 1 in a v2 signature");
    }

    /// A connected pair of loopback sockets: (client side, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// Reading a header off a socket: v1 and v2 (longer than the first peek), in one
    /// segment with the request or split across two; what follows stays unread.
    #[tokio::test]
    async fn reads_headers_off_a_socket() {
        use tokio::io::AsyncWriteExt;
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n".to_vec();
        let v2 = v2_header(
            "[2001:db8::7]:4001".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        let request = b"GET / HTTP/1.1\r\n\r\n";
        for (header, split) in [(&v1, None), (&v1, Some(20)), (&v2, None), (&v2, Some(13))] {
            let (mut client, mut server) = pair().await;
            let mut bytes = header.clone();
            bytes.extend(request);
            let at = split.unwrap_or(bytes.len());
            client.write_all(&bytes[..at]).await.unwrap();
            let writer = tokio::spawn(async move {
                // The rest a moment later, as a second segment.
                tokio::time::sleep(Duration::from_millis(20)).await;
                client.write_all(&bytes[at..]).await.unwrap();
                client
            });
            let source = read_header(&mut server).await.unwrap();
            assert_eq!(source, parse(header).unwrap(), "split at {split:?}");
            assert!(source.is_some());
            let _client = writer.await.unwrap();
            let mut rest = vec![0u8; request.len()];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(rest, request);
        }
    }

    /// A header longer than 4096 bytes is refused; a connection that stops before its
    /// header is complete is given up at the header timeout (on paused time).
    #[tokio::test(start_paused = true)]
    async fn long_and_cut_headers_fail() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = pair().await;
        client.write_all(&v2_with(1, 1, &[0; 5000])).await.unwrap();
        assert_eq!(
            read_header(&mut server).await,
            Err(ProxyHeaderError::Malformed("header too long"))
        );
        let (mut client, mut server) = pair().await;
        client.write_all(b"PROXY TCP4 203.0.").await.unwrap();
        drop(client);
        assert_eq!(
            read_header(&mut server).await,
            Err(ProxyHeaderError::Incomplete)
        );
    }

    /// A v1 header shorter than 16 bytes is measured as soon as its CRLF is there, not
    /// when 16 bytes have come (found by fuzzing: a LOCAL health check sending only
    /// `PROXY UNKNOWN\r\n` waited for bytes that never came).
    #[test]
    fn short_v1_header_is_measured_at_its_crlf() {
        assert_eq!(header_len(b"PROXY UNKNOWN\r\n"), Ok(Some(15)));
        assert_eq!(header_len(b"PROXY UNKNOWN\r"), Ok(None));
        assert_eq!(header_len(b"PROXY"), Ok(None));
        assert_eq!(header_len(b"PROXZ"), Err(ProxyHeaderError::Missing));
    }

    /// A v1 header's source is of the family it names (found by fuzzing: `TCP4` took an
    /// IPv6 source).
    #[test]
    fn v1_family_is_checked() {
        for header in [
            "PROXY TCP4 2001:db8::7 192.0.2.1 4000 443\r\n",
            "PROXY TCP6 203.0.113.7 2001:db8::1 4000 443\r\n",
        ] {
            assert!(
                matches!(
                    parse(header.as_bytes()),
                    Err(ProxyHeaderError::Malformed(_))
                ),
                "{header:?}"
            );
        }
        let mapped = "PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 4000 443\r\n";
        assert!(parse(mapped.as_bytes()).unwrap().unwrap().is_ipv6());
    }

    /// A v2 signature without the rest of the header is malformed, not a panic (found by
    /// fuzzing `parse`, which is public, on its own).
    #[test]
    fn truncated_v2_header_is_malformed() {
        for len in 12..16 {
            let header = v2_header(
                "198.51.100.9:4000".parse().unwrap(),
                "192.0.2.1:443".parse().unwrap(),
            );
            assert!(
                matches!(parse(&header[..len]), Err(ProxyHeaderError::Malformed(_))),
                "{len} bytes"
            );
        }
    }

    /// A peer that sends only a short header, then waits for an answer, has it read at
    /// once instead of timing out.
    #[tokio::test]
    async fn reads_a_lone_short_header() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY UNKNOWN\r\n")
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        assert_eq!(read_header(&mut server).await, Ok(None), "not Incomplete");
    }
}
