//! The machine's response head on the fast path: parsed, its framing decided (RFC 9112
//! §6.3), and rewritten for the client as `headers::to_client` does on hyper's path:
//! hop-by-hop fields and those Connection names dropped, the edge's own fields added.

use super::super::headers;
use super::head::{MAX_HEADERS, fields_to_map, parse_length, tokens, write_field};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the machine closes the connection (the client's is closed after it).
    UntilClose,
}

/// A response head the client was sent.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head in the machine's buffer.
    pub len: usize,
    pub framing: BodyFraming,
    /// The machine's connection may carry another request after this response.
    pub reusable: bool,
    /// The machine asked for a replay (`fly-replay`): nothing was written for the
    /// client; hyper's path replays the request.
    pub replay: bool,
    /// The machine's `edgewake-keep-awake` value (taken out of the client's head).
    pub keep_awake: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("bad response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("bad or conflicting Content-Length in the response")]
    Length,
    /// A field name or value, or the status, that HTTP does not allow.
    #[error("bad field or status in the response head")]
    Field,
    /// 101 to a request that asked for no upgrade (those go to hyper's path).
    #[error("the machine switched protocols unasked")]
    UnaskedSwitch,
}

/// Facts the edge adds to each response.
pub struct EdgeFacts<'a> {
    pub request_id: &'a str,
    pub machine_id: &'a str,
    pub region: &'a str,
    /// The request was HEAD: no body, whatever the head says.
    pub head_request: bool,
    /// The client's connection closes after this response.
    pub close: bool,
    /// How long the request waited for its machine to wake, if it did.
    pub waited: Option<std::time::Duration>,
}

/// Parses the response head at the start of `buf`; when complete, its rewritten form
/// is appended to `out`. `Ok(None)`: more bytes are needed.
pub fn parse_response(
    buf: &[u8],
    facts: &EdgeFacts<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, ResponseError> {
    parse_head(buf, facts.head_request, |parsed| {
        Ok(rewrite(parsed, facts, out))
    })
}

/// The parts of a response head every reader needs.
struct Parsed<'a, 'b> {
    len: usize,
    status: u16,
    reason: &'b str,
    fields: &'a [httparse::Header<'b>],
    framing: BodyFraming,
    reusable: bool,
}

/// Parses the head at the start of `buf` and gives its parts to `then`; `Ok(None)`:
/// more bytes are needed. A 101 is refused: only hyper's path asks for upgrades.
fn parse_head<T>(
    buf: &[u8],
    head_request: bool,
    then: impl FnOnce(Parsed<'_, '_>) -> Result<T, ResponseError>,
) -> Result<Option<T>, ResponseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or(502);
    if status == 101 {
        return Err(ResponseError::UnaskedSwitch);
    }
    let http10 = response.version == Some(0);
    let (framing, reusable) = framing(response.headers, status, head_request, http10)?;
    let parsed = Parsed {
        len,
        status,
        reason: response.reason.unwrap_or(""),
        fields: response.headers,
        framing,
        reusable,
    };
    then(parsed).map(Some)
}

/// The fast path's reading of a parsed head: its rewritten form appended to `out`.
fn rewrite(parsed: Parsed<'_, '_>, facts: &EdgeFacts<'_>, out: &mut Vec<u8>) -> ResponseHead {
    let Parsed {
        len,
        status,
        reason,
        fields,
        framing,
        reusable,
    } = parsed;
    let field = |name: &str| fields.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    let replay = field(super::super::replay::FLY_REPLAY.as_str()).is_some();
    let keep_awake = field(KEEP_AWAKE).map(|h| h.value.to_vec());
    let mut head = ResponseHead {
        status,
        len,
        framing,
        reusable,
        replay,
        keep_awake,
    };
    if (100..200).contains(&status) || replay {
        // An interim response (103 Early Hints): the client gets the final one only.
        // A replay: the client gets the answer of the machine it is replayed to.
        head.framing = BodyFraming::Empty;
        return head;
    }
    let close = facts.close || framing == BodyFraming::UntilClose;
    write_status_line(out, status, reason);
    let connection: Vec<&[u8]> = fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .collect();
    for header in fields {
        let keep = !headers::is_hop_by_hop(header.name)
            && !headers::is_edge_response_header(header.name)
            && !header.name.eq_ignore_ascii_case(KEEP_AWAKE)
            && !connection
                .iter()
                .any(|named| named.eq_ignore_ascii_case(header.name.as_bytes()));
        // The body is passed on as framed: its Transfer-Encoding stays, and a
        // Content-Length next to it goes (RFC 9112 §6.3: a proxy must not pass both).
        let framing_field = framing == BodyFraming::Chunked
            && header.name.eq_ignore_ascii_case("transfer-encoding");
        let stale_length =
            framing == BodyFraming::Chunked && header.name.eq_ignore_ascii_case("content-length");
        if (keep && !stale_length) || framing_field {
            write_field(out, header.name.as_bytes(), header.value);
        }
    }
    let edge = headers::edge_response_headers(facts.machine_id, facts.region, facts.request_id);
    for (name, value) in edge {
        write_field(out, name.as_bytes(), value.as_bytes());
    }
    if let Some(waited) = facts.waited {
        for (name, value) in super::super::report::wake_fields(waited) {
            write_field(out, name.as_bytes(), value.as_bytes());
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    head
}

/// A machine's answer head for hyper's path (`lent`): its status and every field as it
/// came, for `headers::to_client` to rewrite as it does hyper's client's answers.
#[derive(Debug)]
pub struct AnswerHead {
    /// Bytes of the head in the machine's buffer.
    pub len: usize,
    pub status: http::StatusCode,
    pub fields: http::HeaderMap,
    pub framing: BodyFraming,
    /// The machine's connection may carry another request after this answer.
    pub reusable: bool,
}

/// Parses the response head at the start of `buf` into an `AnswerHead`; `Ok(None)`:
/// more bytes are needed.
pub fn parse_answer(buf: &[u8], head_request: bool) -> Result<Option<AnswerHead>, ResponseError> {
    parse_head(buf, head_request, |parsed| {
        // Room for what the edge adds (`headers::to_client`, the wake's fields, HTTP/2's
        // date), so the map is not grown on the way.
        let mut map = fields_to_map(parsed.fields, ADDED_TO_ANSWERS).ok_or(ResponseError::Field)?;
        if matches!(
            parsed.framing,
            BodyFraming::Chunked | BodyFraming::UntilClose
        ) {
            // Next to a Transfer-Encoding it says nothing of the body (RFC 9112 §6.3),
            // and an HTTP/2 client would hold the data to it.
            map.remove(http::header::CONTENT_LENGTH);
        }
        Ok(AnswerHead {
            len: parsed.len,
            status: http::StatusCode::from_u16(parsed.status).map_err(|_| ResponseError::Field)?,
            fields: map,
            framing: parsed.framing,
            reusable: parsed.reusable,
        })
    })
}

/// Fields the edge may add to an answer on hyper's path.
const ADDED_TO_ANSWERS: usize = 8;

/// The machine's busy signal, for the edge only (`keep_awake`).
const KEEP_AWAKE: &str = "edgewake-keep-awake";

pub fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn itoa3(status: u16) -> [u8; 3] {
    let digit = |n: u16| b'0' + (n % 10) as u8;
    [digit(status / 100), digit(status / 10), digit(status)]
}

/// The body's framing and whether the connection stays usable, from the fields.
fn framing(
    fields: &[httparse::Header<'_>],
    status: u16,
    head_request: bool,
    http10: bool,
) -> Result<(BodyFraming, bool), ResponseError> {
    let mut length = None;
    let mut chunked = None;
    let (mut close, mut keep_alive) = (false, false);
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(field.value).ok_or(ResponseError::Length)?;
            if length.is_some_and(|l| l != value) {
                return Err(ResponseError::Length);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` delimits the body; any other coding last means
            // the body runs until the connection closes.
            // Several lines are one list: an empty one changes nothing.
            let last = tokens(field.value).filter(|t| !t.is_empty()).last();
            chunked = Some(match last {
                Some(coding) => coding.eq_ignore_ascii_case(b"chunked"),
                None => chunked.unwrap_or(false),
            });
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(field.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let framing = match (chunked, length) {
        _ if head_request || status < 200 || status == 204 || status == 304 => BodyFraming::Empty,
        (Some(true), _) => BodyFraming::Chunked,
        (Some(false), _) => BodyFraming::UntilClose,
        (None, Some(n)) => BodyFraming::Length(n),
        (None, None) => BodyFraming::UntilClose,
    };
    // A body that had both framings might not end where the machine thinks it does.
    // An HTTP/1.0 machine closes the connection unless it says it keeps it.
    let reusable = !close
        && (keep_alive || !http10)
        && framing != BodyFraming::UntilClose
        && !(chunked.is_some() && length.is_some());
    Ok((framing, reusable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> EdgeFacts<'static> {
        EdgeFacts {
            request_id: "01ABC-ams",
            machine_id: "m1",
            region: "ams",
            head_request: false,
            close: false,
            waited: None,
        }
    }

    fn rewrite(head: &str) -> (ResponseHead, String) {
        let mut out = Vec::new();
        let parsed = parse_response(head.as_bytes(), &facts(), &mut out)
            .unwrap()
            .unwrap();
        (parsed, String::from_utf8(out).unwrap())
    }

    /// Hop-by-hop fields and those Connection names go; the edge's fields are added and
    /// a machine's own copies of them dropped.
    #[test]
    fn rewrites_for_the_client() {
        let (head, out) = rewrite(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-secret\r\nX-Secret: 1\r\n\
             Keep-Alive: timeout=5\r\nEdgewake-Machine: fake\r\nVia: 1.1 up\r\n\r\nhi",
        );
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert!(head.reusable);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 up\r\nvia: 1.1 edgewake\r\n\
             fly-request-id: 01ABC-ams\r\nedgewake-machine: m1\r\nedgewake-region: ams\r\n\r\n"
        );
    }

    /// A chunked body keeps its Transfer-Encoding; no framing at all means until close.
    #[test]
    fn framing_rules() {
        let (head, out) = rewrite("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Chunked);
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        let (head, out) = rewrite("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::UntilClose);
        assert!(!head.reusable);
        assert!(out.contains("connection: close\r\n"));
        let (head, _) = rewrite("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Empty);
        let (head, _) =
            rewrite("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
        assert!(!head.reusable);
    }

    /// An HTTP/1.0 answer closes its connection unless it says keep-alive; an empty
    /// Transfer-Encoding line does not undo an earlier `chunked`; a Content-Length next
    /// to `chunked` is not passed on.
    #[test]
    fn keep_alive_and_framing_across_lines() {
        let (head, _) = rewrite("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert!(!head.reusable, "HTTP/1.0 closes by default");
        let (head, _) =
            rewrite("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
        assert!(head.reusable);
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\n";
        let (head, out) = rewrite(both);
        assert_eq!(head.framing, BodyFraming::Chunked);
        assert!(!head.reusable);
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
    }

    /// hyper's path gets every field as it came (for `headers::to_client`), less a
    /// Content-Length that does not frame the body; HEAD keeps its length.
    #[test]
    fn answer_heads_for_hyper_path() {
        let head = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: x\r\nContent-Length: 4\r\n\r\nbody";
        let answer = parse_answer(head.as_bytes(), false).unwrap().unwrap();
        assert_eq!(answer.len, head.len() - 4);
        assert_eq!(answer.fields.get_all("set-cookie").iter().count(), 2);
        assert_eq!(answer.fields["connection"], "x");
        assert_eq!(answer.framing, BodyFraming::Length(4));
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n";
        let answer = parse_answer(head.as_bytes(), false).unwrap().unwrap();
        assert_eq!(answer.framing, BodyFraming::Chunked);
        assert!(answer.fields.get("content-length").is_none());
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let answer = parse_answer(head.as_bytes(), true).unwrap().unwrap();
        assert_eq!(answer.framing, BodyFraming::Empty);
        assert_eq!(answer.fields["content-length"], "9");
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-", false)
                .unwrap()
                .is_none()
        );
    }

    /// Conflicting lengths, and a switch of protocols nobody asked for, are refused.
    #[test]
    fn refused_heads() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
        assert!(parse_response(head.as_bytes(), &facts(), &mut Vec::new()).is_err());
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
        assert!(parse_response(head.as_bytes(), &facts(), &mut Vec::new()).is_err());
    }
}
