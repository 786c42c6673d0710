//! The API token: `EDGEWAKE_API_TOKEN`, else `FLY_API_TOKEN`, else the one kept in
//! `<data_dir>/api-token` (made on first start, readable by its owner only).

mod support;

use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use support::*;

/// Only `FLY_API_TOKEN`, set to `fly-token`.
const FLY_ONLY: TokenEnv<'static> = TokenEnv {
    edgewake: None,
    fly: Some("fly-token"),
};

/// Asserts that `token` opens the API and `refused` does not.
async fn only_opens(edge: &EdgewakeProcess, token: &str, refused: &str) {
    assert_eq!(edge.api_status(token).await, StatusCode::OK, "{token}");
    let status = edge.api_status(refused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
}

/// Whichever variable is set wins over the others, `EDGEWAKE_API_TOKEN` first; only the
/// winner opens the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_tokens_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let both = TokenEnv {
        edgewake: Some("edgewake-token"),
        fly: Some("fly-token"),
    };
    let edge = EdgewakeProcess::spawn_with_tokens(dir.path(), both).await;
    only_opens(&edge, "edgewake-token", "fly-token").await;
    drop(edge);

    let edge = EdgewakeProcess::spawn_with_tokens(dir.path(), FLY_ONLY).await;
    only_opens(&edge, "fly-token", "edgewake-token").await;
    assert!(
        !dir.path().join("data/api-token").exists(),
        "no token is made when one is given"
    );
}

/// Without either variable, a token is made on first start, kept in the data dir with
/// mode 0600, and used again at the next start; a variable set later wins over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_token_is_private_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let none = TokenEnv {
        edgewake: None,
        fly: None,
    };
    let edge = EdgewakeProcess::spawn_with_tokens(dir.path(), none).await;
    let path = dir.path().join("data/api-token");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.len() >= 32, "a long random token: {token:?}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    only_opens(&edge, &token, "guess").await;
    drop(edge);

    let edge = EdgewakeProcess::spawn_with_tokens(dir.path(), none).await;
    only_opens(&edge, &token, "guess").await;
    drop(edge);

    let edge = EdgewakeProcess::spawn_with_tokens(dir.path(), FLY_ONLY).await;
    only_opens(&edge, "fly-token", &token).await;
}
