//! Every API response carries `fly-request-id` (fly-go keeps it in its errors): a ULID
//! and the edge's region, like the proxy's ids.

use super::ApiState;
use crate::proxy::headers::FLY_REQUEST_ID;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub async fn add(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let id = crate::ids::ulid_with(&state.regions.load().edge);
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(FLY_REQUEST_ID, value);
    }
    response
}
