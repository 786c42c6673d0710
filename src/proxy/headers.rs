//! Header rewriting between client and machine: hop-by-hop headers removed, forwarding
//! headers added (and never taken from the client where they carry edge facts).

use http::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, VIA};
use std::net::IpAddr;

// The lists of names below are statics, not consts: a const array of names would be
// built and dropped again at every use, on every request.

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

// Names made at compile time: inserting by `&str` would parse the name on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
const FLY_FORWARDED_PORT: HeaderName = HeaderName::from_static("fly-forwarded-port");
const FLY_REGION: HeaderName = HeaderName::from_static("fly-region");
/// Request header telling the machine that the instance the client asked for with
/// `fly-prefer-instance-id` could not take the request.
pub const FLY_PREFERRED_INSTANCE_UNAVAILABLE: HeaderName =
    HeaderName::from_static("fly-preferred-instance-unavailable");
pub const FLY_REQUEST_ID: HeaderName = HeaderName::from_static(FLY_REQUEST_ID_NAME);
/// Response header naming the machine that served the request.
pub const MACHINE_HEADER: HeaderName = HeaderName::from_static(MACHINE_HEADER_NAME);
/// Response header naming the region of the machine that served the request.
pub const REGION_HEADER: HeaderName = HeaderName::from_static(REGION_HEADER_NAME);
// The same names as text, for the fast path's heads.
const FLY_REQUEST_ID_NAME: &str = "fly-request-id";
const MACHINE_HEADER_NAME: &str = "edgewake-machine";
const REGION_HEADER_NAME: &str = "edgewake-region";

/// What the edge knows about the client's connection.
#[derive(Debug, Clone)]
pub struct Forwarded<'a> {
    /// The client, as far as trusted peers say (else the peer itself).
    pub client_ip: IpAddr,
    /// Who connected to the edge (a trusted proxy, or the client).
    pub peer_ip: IpAddr,
    /// The host the request was routed by (lower-cased, without port).
    pub host: &'a str,
    /// `host[:port]` as the client named it: the machine's Host.
    pub authority: &'a HeaderValue,
    pub scheme: &'static str,
    pub public_port: u16,
    pub edge_region: &'a str,
}

/// Removes hop-by-hop headers, including those the Connection header names. One pass over
/// the names present (most requests carry one hop-by-hop header, if any) instead of a
/// hashed removal per possible name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name))
        .cloned()
        .collect();
    if doomed.contains(&CONNECTION) {
        let named = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether `name` is a hop-by-hop header (any case), for the fast path, which writes
/// heads without a `HeaderMap`.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// Response headers the edge sets itself: a machine's own are dropped.
static EDGE_RESPONSE_HEADERS: [HeaderName; 3] = [FLY_REQUEST_ID, MACHINE_HEADER, REGION_HEADER];

/// Whether a machine's response header `name` (any case) is replaced by the edge's own.
pub fn is_edge_response_header(name: &str) -> bool {
    EDGE_RESPONSE_HEADERS
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// The headers `to_client` adds, as `(name, value)` pairs, for the fast path.
pub fn edge_response_headers<'a>(
    machine_id: &'a str,
    region: &'a str,
    request_id: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("via", VIA_VALUE),
        (FLY_REQUEST_ID_NAME, request_id),
        (MACHINE_HEADER_NAME, machine_id),
        (REGION_HEADER_NAME, region),
    ]
}

/// The request headers the edge sets itself, from what it knows, in the order
/// `forwarding_fields` gives their values: whatever the client sent under these names
/// never reaches the machine (X-Forwarded-For's earlier hops are kept inside the
/// edge's own value).
static EDGE_REQUEST_HEADERS: [HeaderName; EDGE_REQUEST_FIELDS] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_SSL,
    X_FORWARDED_PORT,
    X_FORWARDED_HOST,
    FLY_CLIENT_IP,
    FLY_FORWARDED_PORT,
    FLY_REGION,
    HOST,
];

const EDGE_REQUEST_FIELDS: usize = 9;

/// How many headers `to_machine` may add: the edge's own and Via.
const ADDED_TO_REQUESTS: usize = EDGE_REQUEST_FIELDS + 1;

/// Whether a client's request header is one the edge sets itself (the forwarding
/// fields, and whether the preferred instance was unavailable): the client's never
/// reaches the machine.
pub fn is_edge_request_header(name: &HeaderName) -> bool {
    EDGE_REQUEST_HEADERS.contains(name) || name == FLY_PREFERRED_INSTANCE_UNAVAILABLE
}

/// The X-Forwarded-For hops the request came with, joined (before `to_machine`).
pub fn earlier_hops(headers: &HeaderMap) -> Option<String> {
    let mut values = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    let mut hops = first.to_string();
    for value in values {
        hops.push_str(", ");
        hops.push_str(value);
    }
    Some(hops)
}

/// Text built on the stack (an address, a port): no allocation per request.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    /// An address as text: IPv4 digit by digit (the formatter costs several times
    /// more, on every request), IPv6 by its `Display`.
    fn ip(ip: IpAddr) -> StackText {
        let mut text = StackText::new();
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.decimal(octet.into());
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
                write!(cursor, "{v6}").expect("an IPv6 address is at most 39 bytes of text");
                text.len = cursor.position() as usize;
            }
        }
        text
    }

    fn port(port: u16) -> StackText {
        let mut text = StackText::new();
        text.decimal(port);
        text
    }

    fn decimal(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            self.push(digit);
        }
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Each header the edge sets on a request for the machine (`EDGE_REQUEST_HEADERS`),
/// with its value, given to `field` in order; `earlier` are the X-Forwarded-For hops
/// the request came with. A value that is not a valid field value (it cannot be for
/// these facts) is left out rather than written. Both paths' heads are made from it.
pub fn forwarding_fields(
    fwd: &Forwarded<'_>,
    earlier: Option<&str>,
    mut field: impl FnMut(&HeaderName, &[u8]),
) {
    let peer = StackText::ip(fwd.peer_ip);
    let client = StackText::ip(fwd.client_ip);
    let port = StackText::port(fwd.public_port);
    let (proto, ssl): (&[u8], &[u8]) = match fwd.scheme {
        "https" => (b"https", b"on"),
        _ => (b"http", b"off"),
    };
    let hops;
    let forwarded_for = match earlier {
        Some(earlier) => {
            hops = format!("{earlier}, {}", fwd.peer_ip);
            hops.as_bytes()
        }
        None => peer.bytes(),
    };
    // In the order of EDGE_REQUEST_HEADERS, where the names are.
    let values: [&[u8]; EDGE_REQUEST_FIELDS] = [
        forwarded_for,
        proto,
        ssl,
        port.bytes(),
        fwd.host.as_bytes(),
        client.bytes(),
        port.bytes(),
        fwd.edge_region.as_bytes(),
        // Exactly the authority the request was routed by, whatever else the client sent.
        fwd.authority.as_bytes(),
    ];
    for (name, value) in EDGE_REQUEST_HEADERS.iter().zip(values) {
        if is_field_value(value) {
            field(name, value);
        }
    }
}

/// A field value as RFC 9110 §5.5 allows (visible text, spaces, tabs, obs-text): no
/// line ends that would let a value start a header of its own.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Rewrites a request's headers for the machine (hyper's path).
pub fn to_machine(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    strip_hop_by_hop(headers);
    let earlier = earlier_hops(headers);
    for name in &EDGE_REQUEST_HEADERS {
        headers.remove(name);
    }
    // Said by the edge once it knows where the request goes (`forward`), never by the
    // client.
    headers.remove(FLY_PREFERRED_INSTANCE_UNAVAILABLE);
    headers.reserve(ADDED_TO_REQUESTS); // one growth of the map, not several
    forwarding_fields(fwd, earlier.as_deref(), |name, value| {
        let value = match *name {
            // The routed authority itself: its value is shared, not copied.
            HOST => Some(fwd.authority.clone()),
            _ => shared_value(value),
        };
        if let Some(value) = value {
            headers.append(name.clone(), value);
        }
    });
    append_via(headers);
}

/// A forwarding field's value: the few that recur on every request (the scheme, TLS
/// or not, the usual ports) from static text, the others copied.
fn shared_value(value: &[u8]) -> Option<HeaderValue> {
    let known = match value {
        b"https" => "https",
        b"http" => "http",
        b"on" => "on",
        b"off" => "off",
        b"443" => "443",
        b"80" => "80",
        _ => return HeaderValue::from_bytes(value).ok(),
    };
    Some(HeaderValue::from_static(known))
}

/// Rewrites a machine's response headers for the client, naming the machine and its
/// region.
pub fn to_client(headers: &mut HeaderMap, machine_id: &str, region: &str, request_id: &str) {
    strip_hop_by_hop(headers);
    append_via(headers);
    set(headers, FLY_REQUEST_ID, request_id);
    set(headers, MACHINE_HEADER, machine_id);
    set(headers, REGION_HEADER, region);
}

pub const VIA_VALUE: &str = "1.1 edgewake";

fn append_via(headers: &mut HeaderMap) {
    headers.append(VIA, HeaderValue::from_static(VIA_VALUE));
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static AUTHORITY: HeaderValue = HeaderValue::from_static("app.localhost");

    fn fwd() -> Forwarded<'static> {
        Forwarded {
            client_ip: "203.0.113.7".parse().unwrap(),
            peer_ip: "203.0.113.7".parse().unwrap(),
            host: "app.localhost",
            authority: &AUTHORITY,
            scheme: "http",
            public_port: 80,
            edge_region: "ams",
        }
    }

    /// Hop-by-hop headers go, including those named by Connection; others stay.
    #[test]
    fn strips_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    /// The client's address is appended to X-Forwarded-For, edge facts are overwritten.
    #[test]
    fn adds_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        h.insert("fly-client-ip", "6.6.6.6".parse().unwrap());
        to_machine(&mut h, &fwd());
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.7");
        assert_eq!(h["fly-client-ip"], "203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-host"], "app.localhost");
        assert_eq!(h["fly-region"], "ams");
        assert_eq!(h["host"], "app.localhost");
        assert_eq!(h["via"], "1.1 edgewake");
    }

    /// The client cannot say its preferred instance was unavailable: the edge says so.
    #[test]
    fn preferred_instance_unavailable_is_the_edges() {
        let mut h = HeaderMap::new();
        h.insert(
            "fly-preferred-instance-unavailable",
            "true".parse().unwrap(),
        );
        to_machine(&mut h, &fwd());
        assert!(!h.contains_key("fly-preferred-instance-unavailable"));
        assert!(is_edge_request_header(&FLY_PREFERRED_INSTANCE_UNAVAILABLE));
    }

    /// Behind a trusted proxy the client it named is `Fly-Client-IP`, while
    /// X-Forwarded-For gets the peer that connected; HTTPS says so.
    #[test]
    fn trusted_client_and_https() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        let fwd = Forwarded {
            client_ip: "198.51.100.1".parse().unwrap(),
            peer_ip: "10.0.0.2".parse().unwrap(),
            scheme: "https",
            public_port: 443,
            ..fwd()
        };
        to_machine(&mut h, &fwd);
        assert_eq!(h["fly-client-ip"], "198.51.100.1");
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-ssl"], "on");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["fly-forwarded-port"], "443");
    }

    /// Addresses and ports are written as their `Display` writes them.
    #[test]
    fn stack_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "203.0.113.7",
            "255.255.255.255",
            "10.0.0.10",
            "2001:db8::1",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(StackText::ip(ip).bytes(), ip.to_string().as_bytes());
        }
        for port in [0, 7, 80, 443, 8080, 65535] {
            assert_eq!(StackText::port(port).bytes(), port.to_string().as_bytes());
        }
    }

    /// A fact that would not be a valid field value (a line end in a configured region)
    /// is left out, and what the client sent under its name is gone too.
    #[test]
    fn a_value_with_a_line_end_is_left_out() {
        let mut h = HeaderMap::new();
        h.insert("fly-region", "client-says".parse().unwrap());
        let fwd = Forwarded {
            edge_region: "ams\r\nx-injected: 1",
            ..fwd()
        };
        to_machine(&mut h, &fwd);
        assert!(!h.contains_key("fly-region"));
        assert!(!h.contains_key("x-injected"));
        assert_eq!(h["fly-client-ip"], "203.0.113.7");
    }

    /// The fast path, which writes heads without a `HeaderMap`, applies the same rules:
    /// the same hop-by-hop names in any case, the edge's own response headers in place
    /// of a machine's, and exactly the headers `to_client` adds.
    #[test]
    fn fast_path_rules_match_the_header_maps() {
        for name in ["Connection", "TRANSFER-ENCODING", "keep-alive", "upgrade"] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["accept", "via", "x-forwarded-for"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
        for name in ["Fly-Request-Id", "edgewake-machine", "EDGEWAKE-REGION"] {
            assert!(is_edge_response_header(name), "{name}");
        }
        assert!(!is_edge_response_header("content-type"));
        let mut h = HeaderMap::new();
        to_client(&mut h, "3d8d413b29d089", "syd", "01ABC-ams");
        let pairs = edge_response_headers("3d8d413b29d089", "syd", "01ABC-ams");
        assert_eq!(pairs.len(), h.len());
        for (name, value) in pairs {
            assert_eq!(h[name], value, "{name}");
        }
    }

    /// The response names the machine and carries a request id.
    #[test]
    fn response_names_machine() {
        let mut h = HeaderMap::new();
        h.insert("via", "1.1 upstream".parse().unwrap());
        to_client(&mut h, "3d8d413b29d089", "syd", "01ABC-ams");
        assert_eq!(h[MACHINE_HEADER], "3d8d413b29d089");
        assert_eq!(h[REGION_HEADER], "syd");
        assert_eq!(h["fly-request-id"], "01ABC-ams");
        assert_eq!(h.get_all("via").iter().count(), 2);
    }
}
