//! The end of a chunked message body (RFC 9112 §7.1), found by scanning the bytes as
//! they pass: the fast path forwards them as they are and only needs to know where the
//! message stops. Strict: a chunk size that is not hex or overflows, a bare LF, or a
//! missing CRLF after a chunk's data is an error. The same scan also decodes
//! (`ChunkedDecoder`), for an answer lent to hyper's path (`lent`), which wants the
//! data and the trailers rather than the framed bytes.

use bytes::{Bytes, BytesMut};
use std::ops::Range;

/// A chunk size line longer than this (extensions included) is refused.
const MAX_SIZE_LINE: usize = 4096;
/// Trailer section bytes allowed after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Trailer fields decoded (as many as hyper reads); a section with more is dropped.
const MAX_TRAILER_FIELDS: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("bad chunk size")]
    BadSize,
    #[error("chunk size line too long")]
    SizeLineTooLong,
    #[error("missing CRLF in chunked body")]
    MissingCrlf,
    #[error("trailer section too long")]
    TrailersTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the size; `digits` seen so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After `;`: extensions, skipped to the CR.
    Extension {
        size: u64,
    },
    /// The CR of the size line was seen; LF next.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// The CR of the final empty line; LF next.
    EndLf,
    Done,
}

#[derive(Debug)]
pub struct ChunkedScanner {
    state: State,
    line: usize,
    trailers: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size { size: 0, digits: 0 },
            line: 0,
            trailers: 0,
        }
    }
}

impl ChunkedScanner {
    /// Scans `data`, the body's next bytes: `Some(n)` when the message ends after the
    /// first `n` of them, `None` when all belong to it and more are to come.
    pub fn scan(&mut self, data: &[u8]) -> Result<Option<usize>, ChunkError> {
        self.scan_parts(data, |_| {})
    }

    /// As `scan`, telling `part` where in `data` each run of chunk data is, and each
    /// byte of the trailer section (the final empty line included).
    fn scan_parts(
        &mut self,
        data: &[u8],
        mut part: impl FnMut(Part),
    ) -> Result<Option<usize>, ChunkError> {
        let mut i = 0;
        while i < data.len() {
            if let State::Data { left } = self.state {
                let take = left.min((data.len() - i) as u64);
                part(Part::Data(i..i + take as usize));
                i += take as usize; // take <= data.len() - i, so it fits
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data { left: left - take }
                };
                continue;
            }
            if self.in_trailers() {
                part(Part::Trailer(data[i]));
            }
            self.step(data[i])?;
            i += 1;
            if self.state == State::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf
        )
    }

    fn step(&mut self, byte: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { size, digits } => {
                self.line += 1;
                if self.line > MAX_SIZE_LINE {
                    return Err(ChunkError::SizeLineTooLong);
                }
                match (byte, digits) {
                    (b'\r', 1..) => State::SizeLf { size },
                    (b';' | b' ' | b'\t', 1..) => State::Extension { size },
                    _ => {
                        let digit = hex_value(byte).ok_or(ChunkError::BadSize)?;
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(digit))
                            .ok_or(ChunkError::BadSize)?;
                        State::Size {
                            size,
                            digits: digits.saturating_add(1),
                        }
                    }
                }
            }
            State::Extension { size } => {
                self.line += 1;
                if self.line > MAX_SIZE_LINE {
                    return Err(ChunkError::SizeLineTooLong);
                }
                match byte {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(ChunkError::MissingCrlf),
                    _ => State::Extension { size },
                }
            }
            State::SizeLf { size } => {
                expect(byte, b'\n')?;
                self.line = 0;
                match size {
                    0 => State::TrailerStart,
                    left => State::Data { left },
                }
            }
            State::Data { .. } => unreachable!("data is skipped in bulk by scan"),
            State::DataCr => {
                expect(byte, b'\r')?;
                State::DataLf
            }
            State::DataLf => {
                expect(byte, b'\n')?;
                State::Size { size: 0, digits: 0 }
            }
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf => {
                return self.trailer_step(byte);
            }
            State::Done => State::Done,
        };
        Ok(())
    }

    fn trailer_step(&mut self, byte: u8) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError::TrailersTooLong);
        }
        self.state = match (self.state, byte) {
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::EndLf, b'\n') => State::Done,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf | State::TrailerLf, _) | (_, b'\n') => {
                return Err(ChunkError::MissingCrlf);
            }
            _ => State::Trailer,
        };
        Ok(())
    }
}

/// What a scanned byte range holds.
enum Part {
    Data(Range<usize>),
    Trailer(u8),
}

/// Decodes a chunked body as its bytes come: the chunks' data, then the trailer
/// section (kept whole until the end: at most `MAX_TRAILERS` bytes).
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    scanner: ChunkedScanner,
    trailers: Vec<u8>,
}

/// What the bytes decoded so far gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The chunk data they held, in one piece (`None`: only framing).
    pub data: Option<Bytes>,
    /// The body ended: what is left in the buffer is not its.
    pub done: bool,
}

impl ChunkedDecoder {
    /// Decodes the body's bytes at the start of `buf`, taking out of it those that are
    /// the body's. Data in one chunk is shared with the buffer, not copied.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        let mut first: Option<Range<usize>> = None;
        let mut joined: Option<BytesMut> = None;
        let trailers = &mut self.trailers;
        let bytes: &[u8] = buf;
        let end = self.scanner.scan_parts(bytes, |part| match part {
            Part::Data(range) => match (&first, &mut joined) {
                (None, _) => first = Some(range),
                (Some(_), Some(joined)) => joined.extend_from_slice(&bytes[range]),
                (Some(earlier), None) => {
                    let mut both = BytesMut::from(&bytes[earlier.clone()]);
                    both.extend_from_slice(&bytes[range]);
                    joined = Some(both);
                }
            },
            Part::Trailer(byte) => trailers.push(byte),
        })?;
        let taken = super::machine::take_data(buf, end.unwrap_or(buf.len()));
        let data = match (joined, first) {
            (Some(joined), _) => Some(joined.freeze()),
            (None, Some(range)) => Some(taken.slice(range)),
            (None, None) => None,
        };
        Ok(Decoded {
            data,
            done: end.is_some(),
        })
    }

    /// The trailer fields, once the body has ended (`None`: there were none, or one
    /// was not a valid field line).
    pub fn trailers(&self) -> Option<http::HeaderMap> {
        if self.trailers.len() <= 2 {
            return None; // the final CRLF alone
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let httparse::Status::Complete((_, fields)) =
            httparse::parse_headers(&self.trailers, &mut fields).ok()?
        else {
            return None;
        };
        super::head::fields_to_map(fields, 0)
    }
}

fn expect(byte: u8, wanted: u8) -> Result<(), ChunkError> {
    (byte == wanted)
        .then_some(())
        .ok_or(ChunkError::MissingCrlf)
}

fn hex_value(byte: u8) -> Option<u64> {
    (byte as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> Result<Option<usize>, ChunkError> {
        let mut scanner = ChunkedScanner::default();
        let mut offset = 0;
        for part in parts {
            if let Some(end) = scanner.scan(part)? {
                return Ok(Some(offset + end));
            }
            offset += part.len();
        }
        Ok(None)
    }

    /// A whole body ends right after its last chunk's CRLF; bytes after it are not its.
    #[test]
    fn finds_the_end() {
        let body = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(scan_all(&[body]), Ok(Some(15)));
    }

    /// The end is found however the bytes are split between reads.
    #[test]
    fn split_anywhere() {
        let body = b"a;ext=1\r\n0123456789\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(scan_all(&[a, b]), Ok(Some(body.len())), "cut at {cut}");
        }
    }

    /// Decoded however the bytes are split between reads: the data of every chunk,
    /// then the trailers; bytes after the body stay in the buffer.
    #[test]
    fn decodes_split_anywhere() {
        let body = b"a;ext=1\r\n0123456789\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for cut in 0..body.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut data = Vec::new();
            let mut buf = BytesMut::new();
            let mut done = false;
            for part in [&body[..cut], &body[cut..]] {
                buf.extend_from_slice(part);
                if done {
                    continue; // after the body: left in the buffer
                }
                let decoded = decoder.decode(&mut buf).unwrap();
                data.extend_from_slice(decoded.data.as_deref().unwrap_or_default());
                done = decoded.done;
            }
            assert!(done, "cut at {cut}");
            assert_eq!(data, b"0123456789abc", "cut at {cut}");
            assert_eq!(&buf[..], b"NEXT", "cut at {cut}");
            let trailers = decoder.trailers().expect("trailers");
            assert_eq!(trailers["x-trailer"], "1");
        }
    }

    /// No trailer section: none given. A bad chunk fails the decoding.
    #[test]
    fn decodes_without_trailers_and_refuses_bad_chunks() {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"2\r\nhi\r\n0\r\n\r\n"[..]);
        let decoded = decoder.decode(&mut buf).unwrap();
        assert_eq!(decoded.data.as_deref(), Some(&b"hi"[..]));
        assert!(decoded.done && buf.is_empty());
        assert_eq!(decoder.trailers(), None);
        let mut buf = BytesMut::from(&b"2\r\nhiXX"[..]);
        let bad = ChunkedDecoder::default().decode(&mut buf);
        assert_eq!(bad, Err(ChunkError::MissingCrlf));
    }

    /// Not all of a body: more is needed.
    #[test]
    fn incomplete() {
        assert_eq!(scan_all(&[b"5\r\nhel"]), Ok(None));
    }

    /// Sizes that are not hex, overflow, or are empty are refused; so are bare LFs and
    /// data that does not end in CRLF.
    #[test]
    fn strict() {
        assert_eq!(scan_all(&[b"zz\r\n"]), Err(ChunkError::BadSize));
        assert_eq!(scan_all(&[b"\r\n"]), Err(ChunkError::BadSize));
        assert_eq!(
            scan_all(&[b"fffffffffffffffff\r\n"]),
            Err(ChunkError::BadSize)
        );
        assert_eq!(scan_all(&[b"5\nhello"]), Err(ChunkError::BadSize));
        assert_eq!(scan_all(&[b"5\r\nhelloXX"]), Err(ChunkError::MissingCrlf));
        assert_eq!(scan_all(&[b"0\r\n\n"]), Err(ChunkError::MissingCrlf));
        assert_eq!(
            scan_all(&[b"0\r\nx: 1\n\r\n"]),
            Err(ChunkError::MissingCrlf)
        );
    }
}
