//! One run of one check against a machine: a TCP connect, or an HTTP request that
//! wants a 2xx answer (redirects are not followed, as on Fly). Each run is bounded by
//! the check's timeout and reads no body.

use crate::machines::checks::{CheckSpec, CheckType};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// How a run went: passed or not, and what to show as its `output`.
pub struct Outcome {
    pub passed: bool,
    pub output: String,
}

impl Outcome {
    fn failed(output: impl Into<String>) -> Outcome {
        Outcome {
            passed: false,
            output: output.into(),
        }
    }
}

/// Runs `spec` once against `addr`, within its timeout.
pub async fn run(spec: &CheckSpec, addr: SocketAddr) -> Outcome {
    let timeout = spec.timeout();
    let attempt = async {
        match spec.check_type {
            CheckType::Tcp => tcp(addr).await,
            CheckType::Http => http(spec, addr).await,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::failed(format!("timed out after {timeout:?}")),
    }
}

async fn tcp(addr: SocketAddr) -> Outcome {
    match TcpStream::connect(addr).await {
        Ok(_) => Outcome {
            passed: true,
            output: format!("connected to {addr}"),
        },
        Err(e) => Outcome::failed(format!("cannot connect to {addr}: {e}")),
    }
}

async fn http(spec: &CheckSpec, addr: SocketAddr) -> Outcome {
    let request = match request(spec, addr) {
        Ok(request) => request,
        Err(problem) => return Outcome::failed(problem),
    };
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::failed(format!("cannot connect to {addr}: {e}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return Outcome::failed(format!("HTTP handshake with {addr}: {e}")),
        };
    // Ends with the sender, when this function returns.
    tokio::spawn(connection);
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status();
            Outcome {
                passed: status.is_success(),
                output: format!("HTTP {status}"),
            }
        }
        Err(e) => Outcome::failed(format!("HTTP request to {addr}: {e}")),
    }
}

/// The check's request: its method (GET), path (/), headers, and a Host of its
/// `tls_server_name` or the machine's address.
fn request(spec: &CheckSpec, addr: SocketAddr) -> Result<Request<Empty<Bytes>>, String> {
    let method = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method {method}"))?;
    let path = spec.path.as_deref().unwrap_or("/");
    let host = spec
        .tls_server_name
        .clone()
        .unwrap_or_else(|| addr.to_string());
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "edgewake-check")
        .body(Empty::new())
        .map_err(|e| format!("bad request: {e}"))?;
    for header in &spec.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("bad header name {}", header.name))?;
        for value in &header.values {
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("bad value for {name}"))?;
            request.headers_mut().append(name.clone(), value);
        }
    }
    Ok(request)
}
