//! The runtime's health switch and its keep-awake call to the edge's API (with the
//! machine's own token), for tests and the walk-through.

use super::{Body, Machine, json_response};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// `/health`, `/health/fail`, `/health/pass`.
pub(super) fn health(machine: &Machine, path: &str) -> Option<Response<Body>> {
    match path {
        "/health/fail" => machine.unhealthy.store(true, Ordering::SeqCst),
        "/health/pass" => machine.unhealthy.store(false, Ordering::SeqCst),
        "/health" => {}
        _ => return None,
    }
    let healthy = !machine.unhealthy.load(Ordering::SeqCst)
        && machine.started.elapsed() >= machine.healthy_after;
    let status = match healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    Some(json_response(status, &json!({"healthy": healthy})))
}

/// Calls the edge's keepawake for this machine with its own token; answers with the
/// API's status and body.
pub(super) async fn keep_awake(machine: &Machine, query: &str) -> Response<Body> {
    let period = query
        .split('&')
        .find_map(|p| p.strip_prefix("for="))
        .unwrap_or("1m");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let url = format!(
        "{}/v1/apps/{}/machines/{}/keepawake",
        env("EDGEWAKE_API_URL"),
        machine.app,
        machine.id
    );
    let body = json!({ "for": period }).to_string();
    match post(&url, &env("EDGEWAKE_MACHINE_TOKEN"), body).await {
        Ok((status, text)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            json_response(status, &value)
        }
        Err(e) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": e})),
    }
}

/// A small POST with a bearer token over HTTP/1.1.
async fn post(url: &str, token: &str, body: String) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or("no host in the API URL")?.to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::post(uri.path())
        .header("host", authority)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&bytes.to_bytes()).into_owned(),
    ))
}
