//! Fly's error JSON, `{"error": "...", "status"?: "..."}`, and the JSON body extractor
//! that turns malformed bodies into it.

use crate::drivers::DriverError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API error: a status and Fly's error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Fly's machine-readable `status` field (`name_taken`, ...), when there is one.
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Why a driver could not take or run a machine, as the status that says so: the
    /// caller's image is wrong (400/422), the registry failed (502), or edgewake's own
    /// sandbox did (500).
    pub fn from_driver(error: DriverError) -> ApiError {
        let status = match &error {
            DriverError::UnknownImage(_) => StatusCode::BAD_REQUEST,
            DriverError::ImageNotFound(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DriverError::Registry(_) => StatusCode::BAD_GATEWAY,
            DriverError::ExecUnsupported => StatusCode::NOT_IMPLEMENTED,
            DriverError::ExecTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            DriverError::Runtime(_) | DriverError::Files(_) | DriverError::Spawn { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, error.to_string())
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }
}

/// Fly's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// For programs, where Fly has a code: `name_taken`, `invalid_argument`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            status: self.code,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose rejection is Fly's error JSON with status 400. The Content-Type is
/// not insisted on: `curl -d '{...}'` without `-H` sends a form type, and such calls
/// written for Fly should still work.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        })?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// An optional JSON body: an empty body is `None` (Fly's stop takes `{"signal","timeout"}`
/// or nothing at all); anything else must parse.
pub struct MaybeJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaybeJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJson(None));
        }
        serde_json::from_slice(&body)
            .map(|v| MaybeJson(Some(v)))
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Parts of Fly's API that edgewake does not have, and what to call them.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("volumes", "volumes"),
    ("secrets", "secrets"),
    ("secretkeys", "secret keys"),
    ("ps", "process listings"),
    ("versions", "machine version history"),
    ("memory", "memory ballooning"),
    ("ip_assignments", "IP assignments"),
    ("deploy_token", "deploy tokens"),
    ("tokens", "tokens"),
];

/// The answer for a path no route takes: a Fly feature edgewake does not have is named
/// (501), anything else is 404.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    let segments: Vec<&str> = uri.path().split('/').collect();
    // A segment right after `apps` or `machines` is a name or an id, not a feature.
    let unsupported = segments.windows(2).find_map(|pair| {
        let named = matches!(pair[0], "apps" | "machines");
        (!named)
            .then(|| UNSUPPORTED.iter().find(|(s, _)| *s == pair[1]))
            .flatten()
    });
    match unsupported {
        Some((_, what)) => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("edgewake does not support {what}"),
        )
        .with_code("unimplemented"),
        None => ApiError::not_found("no such endpoint"),
    }
}
