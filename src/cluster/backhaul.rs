//! The backhaul's credential. A request one edge sends to the node hosting its machine
//! names the target (app, machine, public port) and the request id in headers, and
//! signs them with HMAC-SHA256 under the cluster's shared secret, with the time.
//!
//! Why a signature and not the secret itself as a bearer: the backhaul is plain HTTP
//! (run it on a private network or a tunnel such as WireGuard), so whatever crosses it
//! can be read on the path. A signature never shows the secret, binds the credential to
//! one machine and one request id, and goes stale after `MAX_CLOCK_SKEW`: a captured
//! header can at most be replayed to that machine for that long. Mutual TLS would also
//! hide the bodies, at the price of a certificate per node; the docs say so.

use crate::ids;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::{SystemTime, UNIX_EPOCH};

/// The app the request is for.
pub const APP_HEADER: HeaderName = HeaderName::from_static("edgewake-backhaul-app");
/// The machine the sending edge chose.
pub const MACHINE_HEADER: HeaderName = HeaderName::from_static("edgewake-backhaul-machine");
/// The public port the client came in on (it picks the machine's service).
pub const PORT_HEADER: HeaderName = HeaderName::from_static("edgewake-backhaul-port");
/// `t=<unix seconds>,sig=<hex HMAC>` over the fields above and the request id.
pub const AUTH_HEADER: HeaderName = HeaderName::from_static("edgewake-backhaul-auth");
/// The id the receiving edge gave the request (Fly's header, kept end to end).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("fly-request-id");

/// Every header the backhaul adds, taken off before the machine sees the request.
pub const HEADERS: [HeaderName; 4] = [APP_HEADER, MACHINE_HEADER, PORT_HEADER, AUTH_HEADER];

/// How far a signature's time may be from the receiver's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// Shortest secret accepted: 128 bits of a random string.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a backhaul request was refused (it never reaches a machine).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackhaulError {
    #[error("no backhaul credential")]
    Missing,
    #[error("the backhaul credential is malformed")]
    Malformed,
    #[error("the backhaul credential is too old or from the future")]
    Stale,
    #[error("the backhaul credential does not match")]
    Forged,
}

/// What a signed backhaul request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub app: String,
    pub machine: String,
    pub port: u16,
    pub request_id: String,
}

/// The HMAC key made from the cluster's secret.
pub struct BackhaulKey(ring::hmac::Key);

impl BackhaulKey {
    pub fn new(secret: &[u8]) -> BackhaulKey {
        BackhaulKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// Adds the target and its signature to a request's headers.
    pub fn sign(&self, headers: &mut HeaderMap, relayed: &Relayed) {
        let now = unix_secs();
        let tag = ring::hmac::sign(&self.0, message(now, relayed).as_bytes());
        let auth = format!("t={now},sig={}", ids::hex(tag.as_ref()));
        for (name, value) in [
            (APP_HEADER, relayed.app.as_str()),
            (MACHINE_HEADER, relayed.machine.as_str()),
            (REQUEST_ID_HEADER, relayed.request_id.as_str()),
            (AUTH_HEADER, auth.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        headers.insert(PORT_HEADER, HeaderValue::from(relayed.port));
    }

    /// The target of a request whose signature holds; anything else is refused.
    pub fn verify(&self, headers: &HeaderMap) -> Result<Relayed, BackhaulError> {
        let auth = text(headers, &AUTH_HEADER).ok_or(BackhaulError::Missing)?;
        let (time, signature) = parse_auth(auth).ok_or(BackhaulError::Malformed)?;
        let field = |name| text(headers, name).ok_or(BackhaulError::Malformed);
        let relayed = Relayed {
            app: field(&APP_HEADER)?.to_string(),
            machine: field(&MACHINE_HEADER)?.to_string(),
            port: field(&PORT_HEADER)?
                .parse()
                .map_err(|_| BackhaulError::Malformed)?,
            request_id: field(&REQUEST_ID_HEADER)?.to_string(),
        };
        ring::hmac::verify(&self.0, message(time, &relayed).as_bytes(), &signature)
            .map_err(|_| BackhaulError::Forged)?;
        if unix_secs().abs_diff(time) > MAX_CLOCK_SKEW_SECS {
            return Err(BackhaulError::Stale);
        }
        Ok(relayed)
    }
}

/// What is signed: every field on its own line, so none can run into another.
fn message(time: u64, r: &Relayed) -> String {
    format!(
        "edgewake-backhaul-v1\n{time}\n{}\n{}\n{}\n{}",
        r.app, r.machine, r.port, r.request_id
    )
}

fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

fn parse_auth(auth: &str) -> Option<(u64, Vec<u8>)> {
    let (time, signature) = auth.split_once(',')?;
    let time = time.strip_prefix("t=")?.parse().ok()?;
    let signature = ids::from_hex(signature.strip_prefix("sig=")?)?;
    Some((time, signature))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed() -> Relayed {
        Relayed {
            app: "shop".into(),
            machine: "3d8d413b29d089".into(),
            port: 443,
            request_id: "01ABC-ams".into(),
        }
    }

    /// A signed request verifies and names its target; any changed field, another
    /// secret or no credential at all is refused.
    #[test]
    fn only_signed_requests_pass() {
        let key = BackhaulKey::new(b"0123456789abcdef-secret");
        let mut headers = HeaderMap::new();
        key.sign(&mut headers, &relayed());
        assert_eq!(key.verify(&headers), Ok(relayed()));
        let other = BackhaulKey::new(b"another-secret-of-16+");
        assert_eq!(other.verify(&headers), Err(BackhaulError::Forged));
        let mut moved = headers.clone();
        moved.insert(MACHINE_HEADER, HeaderValue::from_static("ffffffffffffff"));
        assert_eq!(key.verify(&moved), Err(BackhaulError::Forged));
        assert_eq!(key.verify(&HeaderMap::new()), Err(BackhaulError::Missing));
        let mut stale = headers.clone();
        let old = unix_secs() - MAX_CLOCK_SKEW_SECS - 5;
        let tag = ring::hmac::sign(&key.0, message(old, &relayed()).as_bytes());
        let auth = format!("t={old},sig={}", ids::hex(tag.as_ref()));
        stale.insert(AUTH_HEADER, auth.parse().unwrap());
        assert_eq!(key.verify(&stale), Err(BackhaulError::Stale));
        headers.insert(AUTH_HEADER, HeaderValue::from_static("t=1,sig=zz"));
        assert_eq!(key.verify(&headers), Err(BackhaulError::Malformed));
    }
}
