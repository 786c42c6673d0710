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
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("FlyV1 "))
        })
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            Ok(next.run(req).await)
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized: a valid `Authorization: Bearer <token>` header is required",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
