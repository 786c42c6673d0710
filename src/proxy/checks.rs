//! Checks: what is refused before anything is routed or woken. CONNECT (no
//! app's HTTP port is a forward proxy: tunnels are ports whose only handler is `tls`,
//! and never reach HTTP), a transfer coding other than one final `chunked` (RFC 9112
//! §6.1: 501, rather than a body passed on still encoded), and a chunked body whose
//! first chunk is malformed or does not come (read before the wake, so a broken upload
//! never starts a machine).

use super::ProxyError;
use super::upstream::ClientBody;
use crate::connection::BodyError;
use http::header::{HeaderValue, TRANSFER_ENCODING};
use http::{Method, Request};

/// What a client may use instead of CONNECT, for the `Allow` header of a 405.
pub const ALLOWED_METHODS: HeaderValue =
    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE");

/// Refuses what no machine should be sent.
pub fn refuse<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    for value in req.headers().get_all(TRANSFER_ENCODING) {
        if !value.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::UnsupportedTransferCoding);
        }
    }
    Ok(())
}

/// Whether the request's body is chunked (one of known length cannot be malformed, and
/// is not read ahead).
pub fn is_chunked<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
}

/// Reads a chunked body's first chunk ahead, so a broken one fails here.
pub async fn first_chunk(body: &mut ClientBody) -> Result<(), ProxyError> {
    body.peek().await.map_err(|e| match e {
        BodyError::TooSlow(_) => ProxyError::RequestTimeout(e),
        BodyError::Source(_) => ProxyError::BadRequestBody(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, te: &[&str]) -> Request<()> {
        let mut req = Request::builder().method(method);
        for value in te {
            req = req.header(TRANSFER_ENCODING, *value);
        }
        req.body(()).unwrap()
    }

    /// CONNECT is 405; `chunked` alone passes; any other coding, or two, is 501.
    #[test]
    fn methods_and_codings() {
        assert!(matches!(
            refuse(&request(Method::CONNECT, &[])),
            Err(ProxyError::MethodNotAllowed)
        ));
        assert!(refuse(&request(Method::POST, &["chunked"])).is_ok());
        assert!(refuse(&request(Method::POST, &["Chunked"])).is_ok());
        for codings in [
            &["gzip, chunked"][..],
            &["gzip", "chunked"],
            &["chunked, chunked"],
        ] {
            assert!(
                matches!(
                    refuse(&request(Method::POST, codings)),
                    Err(ProxyError::UnsupportedTransferCoding)
                ),
                "{codings:?}"
            );
        }
    }
}
