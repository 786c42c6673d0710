//! Bearer-token auth for every `/v1` call. Fly's clients send `Bearer <token>`, or
//! `FlyV1 <token>` for macaroons; both schemes are accepted.

use super::ApiState;
use super::error::ApiError;
use crate::ids;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use std::path::Path;

/// File in the data dir holding the generated token.
pub const TOKEN_FILE: &str = "api-token";

pub async fn require_token(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer(req.headers()) {
        Some(token) if ids::constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            Ok(next.run(req).await)
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized: a valid `Authorization: Bearer <token>` header is required",
        )),
    }
}

/// The token an `Authorization` header presents.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let header = headers.get(axum::http::header::AUTHORIZATION)?;
    credentials(header.to_str().ok()?)
}

/// The token of `Bearer <token>` or `FlyV1 <token>`; the scheme in any case (RFC 9110
/// §11.1: schemes are case-insensitive).
fn credentials(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let known = ["Bearer", "FlyV1"];
    known
        .iter()
        .any(|k| k.eq_ignore_ascii_case(scheme))
        .then(|| token.trim())
}

/// The API token: the given one, else the one kept in the data dir, else a new one
/// written there (readable by the owner only). Says in the log where it came from.
pub fn resolve_token(given: Option<String>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(token) = given.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path) {
        tracing::info!("API token read from {}", path.display());
        return Ok(token.trim().to_string());
    }
    let token = ids::api_token();
    write_private(&path, &token)?;
    tracing::info!("generated an API token and kept it in {}", path.display());
    Ok(token)
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    crate::files::write_private(path, format!("{token}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Both schemes are read in any case; anything else is no credential.
    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(credentials("Bearer t0k"), Some("t0k"));
        assert_eq!(credentials("bearer t0k"), Some("t0k"));
        assert_eq!(credentials("BEARER   t0k "), Some("t0k"));
        assert_eq!(credentials("flyv1 fm2_x"), Some("fm2_x"));
        assert_eq!(credentials("Basic dXNlcg=="), None);
        assert_eq!(credentials("Bearer"), None);
    }

    /// A generated token is kept readable by its owner only, and read back next time.
    #[test]
    fn generated_token_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let token = resolve_token(None, dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(resolve_token(None, dir.path()).unwrap(), token);
    }
}
