//! `GET /v1/apps/{app}/machines` with Fly's filters: `region`, `state` (comma list or
//! repeated), `include_deleted`, `metadata.KEY=VALUE` (all must match), `summary`
//! (leaves out `config` and `events`).

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::openapi::{AppPath, MachineListQuery};
use super::query::QueryPairs;
use crate::machines::MachineRecord;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

/// Which machines a listing shows, and how much of each.
struct Filter<'q> {
    region: Option<&'q str>,
    states: Vec<&'q str>,
    metadata: Vec<(&'q str, &'q str)>,
    include_deleted: bool,
    summary: bool,
}

impl<'q> Filter<'q> {
    fn parse(query: &'q QueryPairs) -> Result<Filter<'q>, ApiError> {
        Ok(Filter {
            region: query.get("region").filter(|r| !r.is_empty()),
            states: query.list("state"),
            metadata: query.with_prefix("metadata.").collect(),
            include_deleted: query.flag("include_deleted")?,
            summary: query.flag("summary")?,
        })
    }

    fn keeps(&self, record: &MachineRecord) -> bool {
        self.region.is_none_or(|r| record.region == r)
            && (self.states.is_empty() || self.states.contains(&record.state.as_str()))
            && self
                .metadata
                .iter()
                .all(|(k, v)| record.config["metadata"][*k].as_str() == Some(*v))
    }

    fn show(&self, record: MachineRecord) -> Value {
        let mut value = serde_json::to_value(record).expect("a record serializes");
        if self.summary
            && let Some(object) = value.as_object_mut()
        {
            object.remove("config");
            object.remove("events");
        }
        value
    }
}

/// The app's machines, oldest first (destroyed ones after, when included).
#[utoipa::path(get, operation_id = "Machines_list", path = "/apps/{app}/machines", tag = "machines", params(AppPath, MachineListQuery), responses((status = 200, description = "the machines that match every filter", body = [MachineRecord]), (status = 400, body = ErrorBody), (status = 404, description = "no such app or machine", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    query: QueryPairs,
) -> Result<Json<Vec<Value>>, ApiError> {
    let app = state.app(&app)?;
    let filter = Filter::parse(&query)?;
    let mut records: Vec<MachineRecord> = app.machines().iter().map(|m| m.snapshot()).collect();
    if filter.include_deleted {
        records.extend(app.destroyed());
    }
    let shown = records
        .into_iter()
        .filter(|r| filter.keeps(r))
        .map(|r| filter.show(r))
        .collect();
    Ok(Json(shown))
}
