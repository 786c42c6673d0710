//! A small client for the Machines API (hyper-util's pooled client, plain HTTP): where
//! the API is and the token come from flags, the environment (as Fly's tools read them)
//! or the config.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the API listens when nothing says otherwise (Fly's internal API port).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:4280";

/// What went wrong talking to the API. `Api` carries the API's own message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} (HTTP {status})")]
    Api { status: StatusCode, message: String },
    #[error("cannot reach the API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("config {0}")]
    Config(#[from] crate::config::locate::LoadError),
    #[error(transparent)]
    Port(#[from] super::ports::PortSpecError),
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// `FLY_API_HOSTNAME` may be `host:port` (as in Fly's docs) or a full URL.
pub fn base_url(given: &str) -> Result<String, ClientError> {
    let url = given.trim().trim_end_matches('/');
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if url.starts_with("https://") {
        return Err(ClientError::Usage(format!(
            "{url}: this client speaks plain HTTP only; reach the API over http://"
        )));
    }
    url.parse::<Uri>()
        .map_err(|e| ClientError::Usage(format!("bad API address `{given}`: {e}")))?;
    Ok(url)
}

impl ApiClient {
    pub fn new(base: String, token: String) -> ApiClient {
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        ApiClient { base, token, http }
    }

    /// Sends a request and returns the response, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Usage(format!("bad request to {url}: {e}")))?;
        self.http
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })
    }

    /// Sends a request; a success answer's body is returned, an error becomes the API's
    /// message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes, ClientError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = read_body(response).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(api_error(status, &bytes))
        }
    }

    /// `call`, with the answer read as JSON (`null` for an empty one).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = self.call(method, path, body).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

async fn read_body(response: http::Response<Incoming>) -> Result<Bytes, ClientError> {
    response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ClientError::Unreachable {
            url: String::new(),
            reason: e.to_string(),
        })
}

/// The API's error message: Fly's `message` or `error` field, else the raw body.
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let message = field("message")
        .or_else(|| field("error"))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    ClientError::Api { status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fly's `host:port` form gets a scheme; https is refused with a reason.
    #[test]
    fn base_urls() {
        assert_eq!(base_url("127.0.0.1:4280").unwrap(), "http://127.0.0.1:4280");
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert!(base_url("https://api.machines.dev").is_err());
    }

    /// The API's message is what an error says.
    #[test]
    fn error_message_from_body() {
        let err = api_error(StatusCode::NOT_FOUND, br#"{"error":"machine x not found"}"#);
        assert_eq!(err.to_string(), "machine x not found (HTTP 404 Not Found)");
        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert!(err.to_string().starts_with("upstream down"));
    }
}
