//! fly-replay: a machine answering with `fly-replay: region=syd` (or `instance=ID`,
//! `prefer_instance=ID`, `elsewhere=true`, `app=other`, `state=…`) has the request sent
//! again there by the edge, as Fly's proxy does. The request is kept for that: its head
//! always, its body when it is small (`replay.max_body`, and a budget over all requests
//! in flight); a replay whose body was not kept is a 502, as is one past
//! `replay.max_hops`. The replayed request carries `fly-replay-src`.

use super::upstream::{ClientBody, MachineBody};
use crate::config::ReplayConfig;
use crate::connection::BodyError;
use crate::lifecycle::{Pinned, Plan};
use crate::machines::{App, Machine, Registry};
use crate::metrics::Metrics;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
pub const FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("more than {0} fly-replay hops")]
    TooMany(usize),
    #[error("the request body was too large to keep for a fly-replay")]
    BodyNotKept,
    #[error("fly-replay names app {0}, which is not served here")]
    NoApp(String),
    #[error("fly-replay names no target: {0}")]
    NoTarget(String),
    #[error("cannot read the request body: {0}")]
    Body(#[source] BodyError),
}

/// Where a machine asks the request to go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub regions: Vec<String>,
    pub instance: Option<String>,
    pub prefer_instance: Option<String>,
    pub elsewhere: bool,
    pub app: Option<String>,
    pub state: Option<String>,
}

/// Reads a `fly-replay` value: `;`-separated `key=value`, values maybe quoted.
pub fn parse(value: &str) -> Target {
    let mut target = Target::default();
    for field in value.split(';') {
        let Some((key, raw)) = field.split_once('=') else {
            continue;
        };
        let value = raw.trim().trim_matches('"').trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "region" => {
                target.regions = value
                    .split(',')
                    .map(|r| r.trim().to_ascii_lowercase())
                    .filter(|r| !r.is_empty())
                    .collect()
            }
            "instance" => target.instance = Some(value.to_ascii_lowercase()),
            "prefer_instance" => target.prefer_instance = Some(value.to_ascii_lowercase()),
            "elsewhere" => target.elsewhere = value.eq_ignore_ascii_case("true"),
            "app" => target.app = Some(value.to_ascii_lowercase()),
            "state" => target.state = Some(value.to_string()),
            _ => {}
        }
    }
    target
}

impl Target {
    /// The plan of the replayed request, from the one that reached `machine`.
    pub fn plan(&self, from: &Plan, machine: &str) -> Plan {
        let mut plan = from.clone();
        if !self.regions.is_empty() {
            // A region in fly-replay is a force; `any` in the list makes it a preference.
            plan.others_allowed = self.regions.iter().any(|r| r == "any");
            let regions: Vec<String> = self
                .regions
                .iter()
                .filter(|r| *r != "any")
                .cloned()
                .collect();
            plan.regions = regions.into();
        }
        plan.pinned = match (&self.instance, &self.prefer_instance) {
            (Some(id), _) => Pinned::Force(id.clone()),
            (None, Some(id)) => Pinned::Prefer(id.clone()),
            (None, None) => Pinned::Any,
        };
        plan.avoid = match self.elsewhere {
            true => vec![machine.to_string()],
            false => Vec::new(),
        };
        plan
    }

    fn is_empty(&self) -> bool {
        self.regions.is_empty()
            && self.instance.is_none()
            && self.prefer_instance.is_none()
            && !self.elsewhere
            && self.app.is_none()
    }
}

/// The target a machine's answer asks for, if it carries `fly-replay`.
pub fn requested<B>(response: &Response<B>) -> Option<Result<Target, ReplayError>> {
    let value = response.headers().get(FLY_REPLAY)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let target = parse(&text);
    Some(match target.is_empty() {
        true => Err(ReplayError::NoTarget(text.into_owned())),
        false => Ok(target),
    })
}

/// What the edge keeps of a client's request to send it again.
pub struct Kept {
    parts: Parts,
    body: Option<Bytes>,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Memory all kept bodies may take together.
pub struct Budget(Arc<Semaphore>);

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }
}

/// Keeps a copy of the request (its body only when small and the budget allows),
/// and gives back the request ready to send.
pub async fn keep(
    req: Request<ClientBody>,
    limits: &ReplayConfig,
    budget: &Budget,
) -> Result<(Request<MachineBody>, Kept), ReplayError> {
    let (parts, body) = req.into_parts();
    let copy = copy_head(&parts);
    if body.is_end_stream() {
        let empty = Full::new(Bytes::new());
        let kept = Kept {
            parts: copy,
            body: Some(Bytes::new()),
            _budget: None,
        };
        return Ok((Request::from_parts(parts, Either::Right(empty)), kept));
    }
    let length = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let permit = length
        .filter(|n| *n <= limits.max_body)
        .and_then(|n| u32::try_from(n.max(1)).ok())
        .and_then(|n| budget.0.clone().try_acquire_many_owned(n).ok());
    let Some(permit) = permit else {
        let kept = Kept {
            parts: copy,
            body: None,
            _budget: None,
        };
        return Ok((Request::from_parts(parts, Either::Left(body)), kept));
    };
    let bytes = body.collect().await.map_err(ReplayError::Body)?.to_bytes();
    let kept = Kept {
        parts: copy,
        body: Some(bytes.clone()),
        _budget: Some(permit),
    };
    Ok((
        Request::from_parts(parts, Either::Right(Full::new(bytes))),
        kept,
    ))
}

fn copy_head(parts: &Parts) -> Parts {
    let mut copy = Request::new(()).into_parts().0;
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

impl Kept {
    /// The request again, saying where it was replayed from (`fly-replay-src`).
    pub fn again(
        &self,
        machine: &str,
        region: &str,
        state: Option<&str>,
    ) -> Result<Request<MachineBody>, ReplayError> {
        let body = self.body.clone().ok_or(ReplayError::BodyNotKept)?;
        let mut parts = copy_head(&self.parts);
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let mut src = format!("instance={machine};region={region};t={micros}");
        if let Some(state) = state {
            src.push_str(";state=");
            src.push_str(state);
        }
        if let Ok(value) = HeaderValue::from_str(&src) {
            parts.headers.insert(FLY_REPLAY_SRC, value);
        }
        Ok(Request::from_parts(parts, Either::Right(Full::new(body))))
    }
}

/// Where the edge is in one request's replays, and what bounds them.
pub struct Replays<'a> {
    pub limits: &'a ReplayConfig,
    pub kept: Option<Kept>,
    pub hops: usize,
}

impl Replays<'_> {
    /// Turns a machine's fly-replay into the request to send next, moving the plan (and
    /// the app) where it points; counts the outcome by app.
    pub fn next(
        &mut self,
        target: Result<Target, ReplayError>,
        machine: &Machine,
        plan: &mut Plan,
        app: &mut Arc<App>,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Request<MachineBody>, ReplayError> {
        let outcome = self.follow(target, machine, plan, app, registry);
        let word = match &outcome {
            Ok(_) => "replayed",
            Err(ReplayError::TooMany(_)) => "too_many",
            Err(ReplayError::BodyNotKept | ReplayError::Body(_)) => "body",
            Err(ReplayError::NoApp(_) | ReplayError::NoTarget(_)) => "no_target",
        };
        Metrics::count(&metrics.replays, &app.record.name, word);
        outcome
    }

    fn follow(
        &mut self,
        target: Result<Target, ReplayError>,
        machine: &Machine,
        plan: &mut Plan,
        app: &mut Arc<App>,
        registry: &Registry,
    ) -> Result<Request<MachineBody>, ReplayError> {
        let target = target?;
        self.hops += 1;
        if self.hops > self.limits.max_hops {
            return Err(ReplayError::TooMany(self.limits.max_hops));
        }
        let kept = self.kept.as_ref().ok_or(ReplayError::BodyNotKept)?;
        let again = kept.again(&machine.id, &machine.region, target.state.as_deref())?;
        if let Some(name) = &target.app {
            *app = registry
                .app(name)
                .ok_or_else(|| ReplayError::NoApp(name.clone()))?;
        }
        *plan = target.plan(plan, &machine.id);
        Ok(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fly's fields are read, quoted lists included; unknown fields are ignored.
    #[test]
    fn parses_fly_replay() {
        let t = parse(r#"region="syd,any";state=abc;colour=blue"#);
        assert_eq!(t.regions, ["syd", "any"]);
        assert_eq!(t.state.as_deref(), Some("abc"));
        let t = parse("instance=3D8D413B29D089;app=Other");
        assert_eq!(t.instance.as_deref(), Some("3d8d413b29d089"));
        assert_eq!(t.app.as_deref(), Some("other"));
        assert!(parse("elsewhere=true").elsewhere);
        assert!(parse("nothing").is_empty());
    }

    /// A region forces the plan there (unless `any` is listed); elsewhere avoids the
    /// machine that answered; an instance pins the replay to it.
    #[test]
    fn target_shapes_the_plan() {
        let from = Plan {
            regions: vec!["ams".to_string(), "syd".to_string()].into(),
            others_allowed: true,
            pinned: Pinned::Any,
            avoid: Vec::new(),
        };
        let plan = parse("region=syd").plan(&from, "m1");
        assert_eq!(&plan.regions[..], ["syd"]);
        assert!(!plan.others_allowed);
        let plan = parse("elsewhere=true").plan(&from, "m1");
        assert_eq!(plan.avoid, ["m1"]);
        assert!(plan.others_allowed);
        let plan = parse("instance=m2").plan(&from, "m1");
        assert_eq!(plan.pinned, Pinned::Force("m2".into()));
    }
}
