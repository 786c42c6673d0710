//! Fly's error JSON, `{"error": "...", "status"?: "..."}`: the status and code each
//! domain error means (the one place for them), and the JSON body extractor that turns
//! malformed bodies into it.

use crate::certificates::CertificateError;
use crate::cluster::ClusterError;
use crate::drivers::DriverError;
use crate::hostnames::HostnameError;
use crate::lifecycle::{OperationError, UpdateError};
use crate::machines::lease::LeaseError;
use crate::machines::registry::RegistryError;
use crate::machines::spec::SpecError;
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

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }
}

// What each domain error means to an API client: its status, and Fly's `status` code
// where Fly has one. Handlers only use `?`; every mapping is here.

/// A machine config the API refuses: the client's to fix.
impl From<SpecError> for ApiError {
    fn from(error: SpecError) -> ApiError {
        ApiError::bad_request(error.to_string())
    }
}

/// Why a driver could not take or run a machine: the caller's image or command is wrong
/// (400/422), the registry failed (502), exec cannot be done here (501) or in time
/// (408), or edgewake's own host did (500).
impl From<DriverError> for ApiError {
    fn from(error: DriverError) -> ApiError {
        let status = match &error {
            DriverError::UnknownImage(_) | DriverError::ExecNeedsCommand => StatusCode::BAD_REQUEST,
            DriverError::ImageNotFound(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DriverError::Registry(_) => StatusCode::BAD_GATEWAY,
            DriverError::ExecUnsupported => StatusCode::NOT_IMPLEMENTED,
            DriverError::ExecTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            DriverError::ImageStore(_)
            | DriverError::ImageRemoved
            | DriverError::Bundle(_)
            | DriverError::Prepare(_)
            | DriverError::Files(_)
            | DriverError::Spawn { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

/// A lifecycle call on a machine in the wrong state is a conflict (409); a restart whose
/// start failed is edgewake's (500); an exec answers as its driver error does.
impl From<OperationError> for ApiError {
    fn from(error: OperationError) -> ApiError {
        match error {
            OperationError::NotRunning(_) => ApiError::conflict(error.to_string()),
            OperationError::Start(e) => {
                ApiError::internal(format!("the machine did not start again: {e}"))
            }
            OperationError::Exec(e) => e.into(),
        }
    }
}

/// A stale `current_version` fails its precondition (412); a machine being destroyed
/// cannot be updated (409).
impl From<UpdateError> for ApiError {
    fn from(error: UpdateError) -> ApiError {
        let status = match error {
            UpdateError::StaleVersion { .. } => StatusCode::PRECONDITION_FAILED,
            UpdateError::Gone => StatusCode::CONFLICT,
        };
        ApiError::new(status, error.to_string())
    }
}

/// Someone else's lease is a conflict (409); no lease at all is not found (404).
impl From<LeaseError> for ApiError {
    fn from(error: LeaseError) -> ApiError {
        let status = match error {
            LeaseError::Held => StatusCode::CONFLICT,
            LeaseError::NotHeld => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, error.to_string())
    }
}

/// A taken name is Fly's 422 `name_taken`; an app being deleted is gone (404); no
/// address left is Fly's 412 `insufficient_capacity` (what Fly answers when no host has
/// room: retry elsewhere or later); a quota is 403, as Fly's org quotas; the state
/// database failing is edgewake's (500).
impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> ApiError {
        match error {
            RegistryError::AppTaken(_)
            | RegistryError::NameTaken(_)
            | RegistryError::NoFreeName(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
                    .with_code("name_taken")
            }
            RegistryError::AppGone(_) => ApiError::not_found(error.to_string()),
            RegistryError::NoAddress(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, error.to_string())
                    .with_code("insufficient_capacity")
            }
            RegistryError::TooManyApps(_) | RegistryError::TooManyMachines { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, error.to_string())
            }
            RegistryError::Store(_) => ApiError::internal(error.to_string()),
        }
    }
}

/// The cluster's shared state out of reach is a 503 (the change can be made again once
/// it is back); a name another node claimed first is Fly's 422 `name_taken`.
impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> ApiError {
        match error {
            ClusterError::AppTaken(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
                    .with_code("name_taken")
            }
            ClusterError::Unreachable
            | ClusterError::RegionDown(_)
            | ClusterError::Kv { .. }
            | ClusterError::Connect(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
                    .with_code("unavailable")
            }
            ClusterError::Secret(_) => ApiError::internal(error.to_string()),
        }
    }
}

/// Another app's hostname is a conflict (409); what is not a hostname is 400; a name or
/// certificate edgewake cannot take, or ACME without `[acme]`, is 422; the state
/// database or the data dir failing is edgewake's (500).
impl From<CertificateError> for ApiError {
    fn from(error: CertificateError) -> ApiError {
        let status = match &error {
            CertificateError::NotFound { .. } => StatusCode::NOT_FOUND,
            CertificateError::Hostname(HostnameError::Invalid(..)) => StatusCode::BAD_REQUEST,
            CertificateError::Hostname(HostnameError::Taken { .. }) => StatusCode::CONFLICT,
            CertificateError::Hostname(HostnameError::Store(_)) | CertificateError::Disk(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            CertificateError::Hostname(HostnameError::EdgeDomain { .. })
            | CertificateError::NoAcme
            | CertificateError::Wildcard(_)
            | CertificateError::Pem(_)
            | CertificateError::NotCovering { .. }
            | CertificateError::Expired(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, error.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::WakeError;
    use crate::machines::MachineState;
    use std::time::Duration;

    fn status_and_code(error: impl Into<ApiError>) -> (StatusCode, Option<&'static str>) {
        let error = error.into();
        (error.status, error.code)
    }

    /// Each domain error answers with Fly's status, and its code where Fly has one.
    #[test]
    fn domain_errors_answer_as_fly_does() {
        let taken = RegistryError::NameTaken("web".into());
        assert_eq!(
            status_and_code(taken),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("name_taken"))
        );
        let full = RegistryError::NoAddress("127.9.9.0/29".into());
        assert_eq!(
            status_and_code(full),
            (
                StatusCode::PRECONDITION_FAILED,
                Some("insufficient_capacity")
            )
        );
        let quota = RegistryError::TooManyMachines {
            app: "a".into(),
            max: 1,
        };
        assert_eq!(status_and_code(quota), (StatusCode::FORBIDDEN, None));
        let stale = UpdateError::StaleVersion {
            current: "b".into(),
            expected: "a".into(),
        };
        assert_eq!(status_and_code(stale).0, StatusCode::PRECONDITION_FAILED);
        assert_eq!(status_and_code(LeaseError::Held).0, StatusCode::CONFLICT);
        assert_eq!(
            status_and_code(LeaseError::NotHeld).0,
            StatusCode::NOT_FOUND
        );
        let stopped = OperationError::NotRunning(MachineState::Stopped);
        assert_eq!(status_and_code(stopped).0, StatusCode::CONFLICT);
        let restart = OperationError::Start(WakeError::ShuttingDown);
        assert_eq!(
            status_and_code(restart).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let slow = OperationError::Exec(DriverError::ExecTimeout(Duration::from_secs(1)));
        assert_eq!(status_and_code(slow).0, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            status_and_code(SpecError::NoImage),
            (StatusCode::BAD_REQUEST, None)
        );
    }

    /// A driver error's status says whose it is: the caller's image, the registry, or
    /// this host.
    #[test]
    fn driver_errors_say_whose_fault() {
        use crate::images::ImageError;
        let missing = DriverError::from(ImageError::NotFound("r/x:v1".into()));
        assert_eq!(status_and_code(missing).0, StatusCode::UNPROCESSABLE_ENTITY);
        let registry = DriverError::from(ImageError::Registry {
            reference: "r/x:v1".into(),
            reason: "connection refused".into(),
        });
        let answer = ApiError::from(registry);
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        assert!(
            answer
                .message
                .starts_with("cannot get the image: pulling r/x:v1"),
            "{}",
            answer.message
        );
        let store = DriverError::from(ImageError::InUse("r/x:v1".into()));
        assert_eq!(status_and_code(store).0, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
