//! `GET …/machines/{id}/logs` (edgewake's own, not Fly's): what the machine's processes
//! wrote to stdout and stderr, as plain text. `follow=true` keeps the answer open and
//! streams new output as it is written, until the client goes or the machine is
//! destroyed; `offset=N` starts at byte N.

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::openapi::{LogsQuery, MachinePath};
use super::query::QueryPairs;
use crate::machines::Machine;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How often a followed log is checked for new output.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// Largest piece of log sent at once.
const CHUNK: usize = 64 * 1024;

/// The machine's captured output.
#[utoipa::path(get, operation_id = "Machines_logs", path = "/apps/{app}/machines/{id}/logs", tag = "edgewake",
    params(MachinePath, LogsQuery),
    responses((status = 200, description = "the output so far (and, with follow, as it comes)", content_type = "text/plain"),
        (status = 404, description = "no such app or machine", body = ErrorBody)))]
pub async fn logs(
    State(state): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let machine = state.machine(&app, &id)?;
    let follow = query.flag("follow")?;
    let offset = query.parsed::<u64>("offset")?.unwrap_or(0);
    let path = state
        .supervisor
        .driver()
        .log_path(&id)
        .ok_or_else(|| ApiError::not_found("this driver keeps no machine output"))?;
    let file = match File::open(&path).await {
        Ok(mut file) => {
            // Past the end is the end: nothing yet (a seek there could not even be
            // asked for beyond i64::MAX).
            let len = file.metadata().await.map_or(0, |m| m.len());
            file.seek(SeekFrom::Start(offset.min(len)))
                .await
                .map_err(|e| ApiError::internal(format!("cannot read the log: {e}")))?;
            Some(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ApiError::internal(format!("cannot read the log: {e}"))),
    };
    let body = match (file, follow) {
        (Some(file), true) => {
            let ended = Ended {
                machine,
                stopping: state.stopping.clone(),
            };
            Body::from_stream(tail(file, ended, path))
        }
        (Some(mut file), false) => Body::from(read_rest(&mut file).await?),
        (None, _) => Body::empty(),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

async fn read_rest(file: &mut File) -> Result<Vec<u8>, ApiError> {
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the log: {e}")))?;
    Ok(text)
}

/// What ends a followed log: the machine destroyed, or the server shutting down.
struct Ended {
    machine: Arc<Machine>,
    stopping: tokio_util::sync::CancellationToken,
}

impl Ended {
    fn is_ended(&self) -> bool {
        self.machine.is_gone() || self.stopping.is_cancelled()
    }
}

/// The file's bytes from where it is, then new ones as they are written. When the log
/// is rotated (the path now names a new file), the new file is followed from its start.
fn tail(
    file: File,
    machine: Ended,
    path: std::path::PathBuf,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let state = (file, machine, path);
    futures_util::stream::unfold(state, |(mut file, machine, path)| async move {
        let mut buf = vec![0; CHUNK];
        loop {
            match file.read(&mut buf).await {
                Ok(0) if machine.is_ended() => return None,
                Ok(0) => match rotated(&file, &path).await {
                    Some(newer) => file = newer,
                    None => tokio::time::sleep(FOLLOW_INTERVAL).await,
                },
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok(Bytes::from(buf)), (file, machine, path)));
                }
                Err(e) => return Some((Err(e), (file, machine, path))),
            }
        }
    })
}

/// The file now at `path`, if it is not the one open (the log was rotated).
async fn rotated(open: &File, path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let open_inode = open.metadata().await.ok()?.ino();
    let now = tokio::fs::metadata(path).await.ok()?.ino();
    if now == open_inode {
        return None;
    }
    File::open(path).await.ok()
}
