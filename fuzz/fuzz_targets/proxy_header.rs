//! The PROXY protocol reader (`proxy_protocol::header_len` + `parse`) on any bytes a
//! trusted peer could send first.
//!
//! Checked beyond "does not panic":
//! - `header_len` answers the same whether the bytes come at once or split at any point
//!   (the edge peeks as they arrive): a prefix shorter than the header asks for more (or
//!   already knows the length), one that holds it measures it, and a v1 header ends at
//!   its CRLF within 107 bytes;
//! - a v1 `TCP4`/`TCP6` header gives an address of that family;
//! - a parsed source round-trips through a v1 line and through the v2 writer.
#![no_main]

use edgewake::proxy_protocol::{ProxyHeaderError, header_len, parse, v2_header};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header, CRLF included (the spec's limit).
const V1_MAX: usize = 107;

fuzz_target!(|bytes: &[u8]| {
    // `parse` is public: whatever it is given, it answers.
    let _ = parse(bytes);
    let measured = header_len(bytes);
    check_prefixes(bytes, &measured);
    let Ok(Some(len)) = measured else { return };
    if len > bytes.len() {
        return;
    }
    let header = &bytes[..len];
    if header.starts_with(b"PROXY ") {
        assert!(
            len <= V1_MAX && header.ends_with(b"\r\n"),
            "v1 measured wrong"
        );
    }
    let Ok(Some(source)) = parse(header) else {
        return;
    };
    if header.starts_with(b"PROXY TCP4 ") {
        assert!(source.is_ipv4(), "TCP4 header gave {source}");
    }
    if header.starts_with(b"PROXY TCP6 ") {
        assert!(source.is_ipv6(), "TCP6 header gave {source}");
    }
    round_trip_v1(source);
    round_trip_v2(source);
});

/// Every prefix of `bytes` is measured consistently with the whole.
fn check_prefixes(bytes: &[u8], whole: &Result<Option<usize>, ProxyHeaderError>) {
    for cut in 0..bytes.len() {
        let part = header_len(&bytes[..cut]);
        match whole {
            Ok(Some(len)) if cut >= *len => {
                assert_eq!(part, Ok(Some(*len)), "prefix {cut} holds the header")
            }
            // v2 says its length in its first 16 bytes; the reader then waits for the rest.
            Ok(Some(len)) => assert!(
                part == Ok(None) || part == Ok(Some(*len)),
                "prefix {cut} of a header: {part:?}"
            ),
            Ok(None) => assert_eq!(part, Ok(None), "prefix {cut} of a header"),
            // A prefix may still look like a header the rest refutes.
            Err(_) => assert!(part.is_err() || part == Ok(None), "prefix {cut}"),
        }
    }
}

fn round_trip_v1(source: SocketAddr) {
    let (family, destination) = match source.ip() {
        IpAddr::V4(_) => ("TCP4", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        IpAddr::V6(_) => ("TCP6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    let line = format!(
        "PROXY {family} {} {destination} {} 443\r\n",
        source.ip(),
        source.port()
    );
    assert_eq!(
        header_len(line.as_bytes()),
        Ok(Some(line.len())),
        "{line:?}"
    );
    assert_eq!(parse(line.as_bytes()), Ok(Some(source)), "{line:?}");
}

/// v2 with a destination of either family: a v4 source may come back v4-mapped (the
/// writer's choice for mixed families), which is the same client.
fn round_trip_v2(source: SocketAddr) {
    for destination in ["192.0.2.1:443", "[2001:db8::1]:443"] {
        let header = v2_header(source, destination.parse().expect("a literal address"));
        assert_eq!(header_len(&header), Ok(Some(header.len())));
        let back = parse(&header)
            .expect("our own header parses")
            .expect("it names a source");
        assert_eq!(back.ip().to_canonical(), source.ip().to_canonical());
        assert_eq!(back.port(), source.port());
    }
}
