//! Request and response heads on the fast path: parsed with `httparse` from the
//! connection's buffer, and written rewritten into one output buffer. The request head
//! becomes an `http::Request<()>` (values share the read buffer, nothing copied) so the
//! proxy's phases and header rewrite are the same code on both paths; the response head
//! is rewritten straight from the parsed fields into the client's output.
//!
//! Only plain, unambiguous requests stay here. Anything else is `Unusual` and goes to
//! hyper, which owns every error status for malformed input, so both paths refuse the
//! same requests the same way: another HTTP version, CONNECT, a target that is not a
//! path, bare LF line ends, obs-fold or any header httparse refuses, Transfer-Encoding,
//! Upgrade, Expect, several or bad Content-Lengths, no or several Hosts.

use super::super::headers;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use std::mem::MaybeUninit;

/// Headers a request or response on the fast path may have; more go to hyper (or, in
/// a response, fail it).
pub const MAX_HEADERS: usize = 64;
/// A larger request body is streamed by hyper's path instead.
pub const MAX_BODY: u64 = 1 << 20;

/// A request head the fast path serves.
pub struct RequestHead {
    pub req: Request<()>,
    /// The head as the client sent it, should it go to hyper after all.
    pub raw: Bytes,
    /// Content-Length (0 without one).
    pub body: u64,
    /// The client said `Connection: close`.
    pub close: bool,
}

// Made once per request and moved once: boxing the head would add an allocation to
// every request to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// Not for the fast path; the buffer is as it was.
    Unusual,
    /// Both Content-Length and Transfer-Encoding: refused with 400 and the connection
    /// closed (hyper would let Transfer-Encoding win).
    Ambiguous,
    Head(RequestHead),
}

/// Where a field sits in the head: name and value as offsets.
#[derive(Clone, Copy, Default)]
struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// What the header scan found.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    transfer_encoding: bool,
    close: bool,
    hosts: usize,
}

/// Parses the request head at the start of `buf`; a complete one is taken out of it.
/// More than `max_headers` fields is hyper's to refuse. The head's fields go into
/// `spare`, a map an earlier request on the connection gave back (`recycle`): a map of
/// this size is an allocation of several KiB, which glibc's malloc serves slowly.
pub fn parse_request(buf: &mut BytesMut, max_headers: usize, spare: &mut HeaderMap) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Unusual,
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Unusual;
    };
    if method == "CONNECT" || !path.starts_with('/') || has_bare_lf(&buf[..len]) {
        return Parsed::Unusual;
    }
    let mut fields = [Field::default(); MAX_HEADERS];
    let mut framing = Framing::default();
    for (field, header) in fields.iter_mut().zip(req.headers.iter()) {
        if !scan_request_header(header, &mut framing) {
            return Parsed::Unusual;
        }
        *field = Field {
            name: offset(header.name.as_bytes()),
            value: offset(header.value),
        };
    }
    let count = req.headers.len();
    if count > max_headers {
        return Parsed::Unusual;
    }
    let (method, path) = (offset(method.as_bytes()), offset(path.as_bytes()));
    if framing.transfer_encoding && framing.length.is_some() {
        return Parsed::Ambiguous;
    }
    if framing.transfer_encoding
        || framing.hosts != 1
        || framing.length.is_some_and(|n| n > MAX_BODY)
    {
        return Parsed::Unusual;
    }
    let raw = buf.split_to(len).freeze();
    match build_request(&raw, method, path, &fields[..count], std::mem::take(spare)) {
        Some(req) => Parsed::Head(RequestHead {
            req,
            raw,
            body: framing.length.unwrap_or(0),
            close: framing.close,
        }),
        None => {
            unread(buf, &raw);
            Parsed::Unusual
        }
    }
}

/// Gives a served request's map back, emptied, for the connection's next request
/// (`spare`). Emptied now: its values share the read buffer, which can only be reused
/// for the next read (instead of a new one allocated) once nothing else holds it.
pub fn recycle(head: RequestHead, spare: &mut HeaderMap) {
    *spare = head.req.into_parts().0.headers;
    spare.clear();
}

/// Puts `raw` back in front of `buf` (a head that goes to hyper after all).
pub fn unread(buf: &mut BytesMut, raw: &[u8]) {
    let mut restored = BytesMut::with_capacity(raw.len() + buf.len());
    restored.extend_from_slice(raw);
    restored.extend_from_slice(buf);
    *buf = restored;
}

/// Notes what a request header says about framing; false when it makes the request
/// one for hyper.
fn scan_request_header(header: &httparse::Header<'_>, framing: &mut Framing) -> bool {
    let name = header.name;
    if name.eq_ignore_ascii_case("content-length") {
        let length = parse_length(header.value);
        if framing.length.is_some() || length.is_none() {
            return false;
        }
        framing.length = length;
    } else if name.eq_ignore_ascii_case("host") {
        framing.hosts += 1;
    } else if name.eq_ignore_ascii_case("connection") {
        for token in tokens(header.value) {
            if token.eq_ignore_ascii_case(b"upgrade") {
                return false;
            }
            framing.close |= token.eq_ignore_ascii_case(b"close");
        }
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        framing.transfer_encoding = true;
    } else if ["upgrade", "expect"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        return false;
    }
    true
}

fn build_request(
    raw: &Bytes,
    method: (usize, usize),
    path: (usize, usize),
    fields: &[Field],
    mut map: HeaderMap,
) -> Option<Request<()>> {
    let slice = |(at, len): (usize, usize)| raw.slice(at..at + len);
    let mut req = Request::new(());
    *req.method_mut() = Method::from_bytes(&raw[method.0..method.0 + method.1]).ok()?;
    *req.uri_mut() = Uri::from_maybe_shared(slice(path)).ok()?;
    *req.version_mut() = Version::HTTP_11;
    map.reserve(fields.len()); // the edge's own fields are written, not added here
    *req.headers_mut() = map;
    let map = req.headers_mut();
    for field in fields {
        // The name is read in place (a known name is not copied, another is copied
        // anyway); only the value shares the buffer.
        let (at, len) = field.name;
        let name = HeaderName::from_bytes(&raw[at..at + len]).ok()?;
        let value = HeaderValue::from_maybe_shared(slice(field.value)).ok()?;
        map.append(name, value);
    }
    Some(req)
}

/// A Content-Length value: digits only.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The comma-separated tokens of a list header, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// A LF not preceded by CR: httparse takes it, RFC 9112 §2.2 lets a recipient, but a
/// proxy that reads lines differently from the machine behind it invites smuggling.
/// Only the line ends are looked at (memchr): a browser's 500-byte head took 174 ns
/// byte by byte, 49 ns this way.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// The request head for the machine, but for its last fields: the request line, the
/// client's fields but those the edge sets (hop-by-hop ones are already gone from the
/// map), then the edge's (`headers::forwarding_fields`, as on hyper's path) and Via.
/// `finish_request_head` ends it once the machine is known.
pub fn write_request_head(out: &mut Vec<u8>, req: &Request<()>, fwd: &headers::Forwarded<'_>) {
    write_request_line(out, req.method(), req.uri());
    for (name, value) in req.headers() {
        if !headers::is_edge_request_header(name) {
            write_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let earlier = headers::earlier_hops(req.headers());
    headers::forwarding_fields(fwd, earlier.as_deref(), |name, value| {
        write_field(out, name.as_str().as_bytes(), value);
    });
    write_field(out, b"via", headers::VIA_VALUE.as_bytes());
}

/// Ends a head `write_request_head` began: what the edge says about the machine the
/// request goes to, and the blank line.
pub fn finish_request_head(out: &mut Vec<u8>, preferred_unavailable: bool) {
    if preferred_unavailable {
        let name = headers::FLY_PREFERRED_INSTANCE_UNAVAILABLE;
        write_field(out, name.as_str().as_bytes(), b"true");
    }
    out.extend_from_slice(b"\r\n");
}

/// `METHOD target HTTP/1.1`, the target in origin form (the path and query).
pub fn write_request_line(out: &mut Vec<u8>, method: &Method, uri: &Uri) {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// A header map of `fields` as httparse read them, with room for `room` more
/// (`None`: a name or value HTTP does not allow).
pub fn fields_to_map(fields: &[httparse::Header<'_>], room: usize) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(fields.len() + room);
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// Every field of `headers` as `name: value` lines.
pub fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        write_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        parse_request(
            &mut BytesMut::from(text),
            MAX_HEADERS,
            &mut HeaderMap::new(),
        )
    }

    /// A plain keep-alive GET is the fast path's, with its headers and no body.
    #[test]
    fn plain_get() {
        let Parsed::Head(head) =
            parse("GET /a?b=1 HTTP/1.1\r\nHost: x.localhost\r\nAccept: */*\r\n\r\n")
        else {
            panic!("not parsed")
        };
        assert_eq!(head.req.uri().path_and_query().unwrap(), "/a?b=1");
        assert_eq!(head.req.headers()["host"], "x.localhost");
        assert_eq!((head.body, head.close), (0, false));
    }

    /// A complete head is taken out of the buffer; a pipelined request stays behind.
    #[test]
    fn pipelined_rest_stays() {
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n");
        assert!(matches!(
            parse_request(&mut buf, MAX_HEADERS, &mut HeaderMap::new()),
            Parsed::Head(_)
        ));
        assert_eq!(&buf[..], b"GET /2 HTTP/1.1\r\n");
    }

    /// Content-Length and Connection: close are read.
    #[test]
    fn length_and_close() {
        let text =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let Parsed::Head(head) = parse(text) else {
            panic!("not parsed")
        };
        assert_eq!((head.body, head.close), (5, true));
    }

    /// Whatever hyper should judge goes to hyper, the buffer untouched.
    #[test]
    fn unusual_requests_go_to_hyper() {
        for text in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(text);
            assert!(
                matches!(
                    parse_request(&mut buf, MAX_HEADERS, &mut HeaderMap::new()),
                    Parsed::Unusual
                ),
                "{text:?}"
            );
            assert_eq!(&buf[..], text.as_bytes());
        }
    }

    /// A map given back by a served request carries none of its fields into the next.
    #[test]
    fn recycled_map_starts_empty() {
        let mut spare = HeaderMap::new();
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\n\r\n");
        let Parsed::Head(first) = parse_request(&mut buf, MAX_HEADERS, &mut spare) else {
            panic!("not parsed")
        };
        recycle(first, &mut spare);
        assert!(spare.is_empty() && spare.capacity() > 0, "kept, emptied");
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: b\r\n\r\n");
        let Parsed::Head(second) = parse_request(&mut buf, MAX_HEADERS, &mut spare) else {
            panic!("not parsed")
        };
        assert_eq!(second.req.headers().len(), 1);
        assert_eq!(second.req.headers()["host"], "b");
    }

    /// The head written for the machine carries exactly the fields hyper's path sends
    /// (`headers::to_machine`): the client's but hop-by-hop and edge-set ones, the
    /// edge's forwarding fields, both Vias.
    #[test]
    fn machine_head_matches_hypers_path() {
        let text = "GET /p?q=1 HTTP/1.1\r\nHost: App.localhost:8080\r\nConnection: x-secret\r\n\
            X-Secret: 1\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\n\
            Fly-Client-IP: 6.6.6.6\r\nFly-Region: xxx\r\nVia: 1.0 corp\r\nAccept: */*\r\n\r\n";
        let Parsed::Head(mut head) = parse(text) else {
            panic!("not parsed")
        };
        let authority = HeaderValue::from_static("App.localhost:8080");
        let fwd = headers::Forwarded {
            client_ip: "198.51.100.2".parse().unwrap(),
            peer_ip: "10.0.0.9".parse().unwrap(),
            host: "app.localhost",
            authority: &authority,
            scheme: "https",
            public_port: 443,
            edge_region: "ams",
        };
        let mut wanted = head.req.headers().clone();
        headers::to_machine(&mut wanted, &fwd);
        headers::strip_hop_by_hop(head.req.headers_mut());
        let mut out = Vec::new();
        write_request_head(&mut out, &head.req, &fwd);
        finish_request_head(&mut out, false);

        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut sent = httparse::Request::new(&mut fields);
        assert!(sent.parse(&out).unwrap().is_complete());
        assert_eq!(sent.path, Some("/p?q=1"));
        let mut written: Vec<(String, &[u8])> = (sent.headers.iter())
            .map(|h| (h.name.to_ascii_lowercase(), h.value))
            .collect();
        let mut wanted: Vec<(String, &[u8])> = (wanted.iter())
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes()))
            .collect();
        written.sort();
        wanted.sort();
        assert_eq!(written, wanted);
        assert!(written.contains(&(
            "x-forwarded-for".into(),
            b"198.51.100.1, 198.51.100.2, 10.0.0.9"
        )));
    }

    /// A fact that is not a valid field value (a line end in a configured region, a
    /// control byte) is left out of the written head: it cannot start a field of its
    /// own; a tab inside a value is kept.
    #[test]
    fn machine_head_leaves_out_invalid_facts() {
        let Parsed::Head(head) = parse("GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n") else {
            panic!("not parsed")
        };
        let authority = HeaderValue::from_static("a.localhost");
        for (region, written) in [
            ("ams\r\nx-injected: 1", false),
            ("ams\x7f", false),
            ("ams\x01", false),
            ("ams\tnorth", true),
        ] {
            let fwd = headers::Forwarded {
                client_ip: "203.0.113.7".parse().unwrap(),
                peer_ip: "203.0.113.7".parse().unwrap(),
                host: "a.localhost",
                authority: &authority,
                scheme: "http",
                public_port: 80,
                edge_region: region,
            };
            let mut out = Vec::new();
            write_request_head(&mut out, &head.req, &fwd);
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains("x-injected"), "{text}");
            assert_eq!(text.contains("fly-region"), written, "{region:?}: {text}");
            assert!(text.contains("fly-client-ip: 203.0.113.7\r\n"), "{text}");
        }
    }

    /// An unfinished head asks for more.
    #[test]
    fn partial() {
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Partial
        ));
    }
}
