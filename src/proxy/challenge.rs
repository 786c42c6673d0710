//! ACME HTTP-01 (RFC 8555 §8.3) on the HTTP listener: every request for
//! `/.well-known/acme-challenge/<token>` is answered by the edge, before any routing,
//! so a validation (or anyone asking that path) never wakes a machine.

use super::{ProxyBody, text_response};
use crate::tls::challenges::{Challenges, HTTP01_PREFIX};
use http::{Request, Response, StatusCode};

/// The edge's answer if `req` asks for an HTTP-01 token: its key authorization while
/// an order publishes it, else 404.
pub fn answer<B>(challenges: &Challenges, req: &Request<B>) -> Option<Response<ProxyBody>> {
    let token = req.uri().path().strip_prefix(HTTP01_PREFIX)?;
    Some(match challenges.key_authorization(token) {
        Some(key_authorization) => text_response(StatusCode::OK, key_authorization),
        None => text_response(StatusCode::NOT_FOUND, "no such ACME challenge\n".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    /// A published token gets its key authorization, any other token 404, and other
    /// paths are not the edge's business.
    #[test]
    fn tokens() {
        let challenges = Arc::new(Challenges::default());
        let _published = challenges.publish_http01("tok", "tok.thumb");
        let known = answer(&challenges, &get("/.well-known/acme-challenge/tok")).unwrap();
        assert_eq!(known.status(), StatusCode::OK);
        let unknown = answer(&challenges, &get("/.well-known/acme-challenge/other")).unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert!(answer(&challenges, &get("/index.html")).is_none());
    }
}
