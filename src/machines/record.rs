//! The persisted shape of a machine, as Fly's Machines API shows it.

use crate::drivers::Exit;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a machine is in its life. Stored as a `u8` for the proxy's lock-free reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum MachineState {
    Created = 0,
    Starting = 1,
    Started = 2,
    Stopping = 3,
    Stopped = 4,
    Destroying = 5,
    Destroyed = 6,
}

impl MachineState {
    pub fn from_u8(value: u8) -> MachineState {
        match value {
            0 => MachineState::Created,
            1 => MachineState::Starting,
            2 => MachineState::Started,
            3 => MachineState::Stopping,
            4 => MachineState::Stopped,
            5 => MachineState::Destroying,
            _ => MachineState::Destroyed,
        }
    }

    /// Running or on its way there: what deleting needs `force` for.
    pub fn is_running(self) -> bool {
        matches!(self, MachineState::Started | MachineState::Starting)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Created => "created",
            MachineState::Starting => "starting",
            MachineState::Started => "started",
            MachineState::Stopping => "stopping",
            MachineState::Stopped => "stopped",
            MachineState::Destroying => "destroying",
            MachineState::Destroyed => "destroyed",
        }
    }
}

/// The parts of an image reference, as Fly reports them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub labels: serde_json::Map<String, Value>,
}

impl ImageRef {
    /// Splits `registry/repo:tag`; Docker Hub is the registry when none is named.
    pub fn parse(reference: &str) -> ImageRef {
        let (name, digest) = reference.split_once('@').unwrap_or((reference, ""));
        let (name, tag) = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (name, "latest"),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((r, rest)) if r.contains('.') || r.contains(':') || r == "localhost" => (r, rest),
            _ => ("docker-hub-mirror.fly.io", name),
        };
        ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.into(),
            digest: digest.into(),
            labels: Default::default(),
        }
    }
}

/// One entry of a machine's event log (newest first in the API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MachineEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
}

/// Who caused an event: a user through the API, or edgewake itself (`flyd` in Fly's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    User,
    Edgewake,
}

impl EventSource {
    fn as_str(self) -> &'static str {
        match self {
            EventSource::User => "user",
            EventSource::Edgewake => "flyd",
        }
    }
}

impl MachineEvent {
    pub fn new(kind: &str, status: MachineState, source: EventSource) -> MachineEvent {
        MachineEvent {
            id: crate::ids::ulid(),
            kind: kind.into(),
            status: status.as_str().into(),
            source: source.as_str().into(),
            timestamp: now_millis(),
            request: None,
        }
    }

    /// An `exit` event carrying Fly's `exit_event` details.
    pub fn exit(exit: Exit, requested: bool) -> MachineEvent {
        let mut event = MachineEvent::new("exit", MachineState::Stopped, EventSource::Edgewake);
        event.request = Some(serde_json::json!({
            "exit_event": {
                "exit_code": exit.code.unwrap_or(-1),
                "signal": exit.signal.unwrap_or(-1),
                "requested_stop": requested,
                "restarting": false,
                "oom_killed": exit.oom_killed,
                "exited_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            }
        }));
        event
    }
}

/// Most events a machine keeps; older ones are dropped.
pub const MAX_EVENTS: usize = 100;

/// A machine as the API shows it and as SQLite stores it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineRecord {
    pub id: String,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    pub instance_id: String,
    #[schema(value_type = String, format = Ipv4)]
    pub private_ip: Ipv4Addr,
    /// The config as the client gave it; unknown fields kept.
    #[schema(value_type = Object)]
    pub config: Value,
    pub image_ref: ImageRef,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<MachineEvent>,
    /// The proxy routes nothing to a cordoned machine (cordon, or create with
    /// `skip_service_registration`).
    #[serde(default)]
    pub cordoned: bool,
    /// The last results of the machine's checks (in memory only: filled in by
    /// `Machine::snapshot`, never stored).
    #[serde(default, skip_deserializing, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<super::checks::CheckResult>,
}

impl MachineRecord {
    /// Records a new state with its event, newest first.
    pub fn push_event(&mut self, event: MachineEvent) {
        self.events.insert(0, event);
        self.events.truncate(MAX_EVENTS);
        self.updated_at = now_rfc3339();
    }
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Records for tests of the cluster's view of other nodes' machines.
#[cfg(test)]
impl MachineRecord {
    /// Machine `id` in `state`, in region `syd`, of image `img`.
    pub fn sample(id: &str, state: MachineState) -> MachineRecord {
        MachineRecord {
            id: id.into(),
            name: format!("m-{id}"),
            state,
            region: "syd".into(),
            instance_id: "v1".into(),
            private_ip: Ipv4Addr::new(127, 9, 0, 2),
            config: serde_json::json!({"image": "img"}),
            image_ref: ImageRef::parse("img"),
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
            events: Vec::new(),
            cordoned: false,
            checks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker Hub names get Fly's registry; explicit registries and tags are kept.
    #[test]
    fn image_refs_split() {
        let hub = ImageRef::parse("flyio/fastify-functions");
        assert_eq!(
            (hub.repository.as_str(), hub.tag.as_str()),
            ("flyio/fastify-functions", "latest")
        );
        let own = ImageRef::parse("registry.local:5000/team/app:v2");
        assert_eq!(own.registry, "registry.local:5000");
        assert_eq!(
            (own.repository.as_str(), own.tag.as_str()),
            ("team/app", "v2")
        );
    }

    /// States survive the u8 round trip the proxy's atomic uses.
    #[test]
    fn state_round_trips_through_u8() {
        for s in [
            MachineState::Created,
            MachineState::Started,
            MachineState::Destroyed,
        ] {
            assert_eq!(MachineState::from_u8(s as u8), s);
        }
    }
}
