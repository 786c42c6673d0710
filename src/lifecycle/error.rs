//! Why lifecycle calls fail, each kept typed so the proxy and the API can say what it
//! means (a status, whether a retry helps) in one place each.

use super::start::describe_exit;
use crate::drivers::{DriverError, Exit};
use crate::machines::MachineState;
use std::sync::Arc;
use std::time::Duration;

/// Why a wake failed. Cloned to every request that waited on it, so the driver's error
/// is shared, not copied (it may hold an `io::Error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WakeError {
    #[error("the machine exited while starting ({})", describe_exit(*.0))]
    Exited(Exit),
    #[error("the machine could not start: {0}")]
    StartFailed(#[source] Arc<DriverError>),
    #[error("the machine did not listen within {0:?}")]
    Timeout(Duration),
    #[error(
        "the machine failed to start; starts are held off for {0:?} (an API start tries at once)"
    )]
    BackingOff(Duration),
    #[error("the machine is being destroyed")]
    Gone,
    #[error("edgewake is shutting down")]
    ShuttingDown,
}

/// Why no machine could take the request.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("app {app} has no machine that can serve port {port}")]
    NoMachines { app: String, port: u16 },
    #[error("every machine of app {app} is at its hard limit; try again later")]
    AtHardLimit { app: String },
    #[error("app {app} has no machine {machine} (fly-force-instance-id)")]
    UnknownInstance { app: String, machine: String },
    #[error("machine {machine} cannot take the request now (fly-force-instance-id)")]
    InstanceUnavailable { machine: String },
    #[error("machine {machine}: {error}")]
    Wake { machine: String, error: WakeError },
    #[error("no machine of app {app} passes its health checks; try again later")]
    Unhealthy { app: String },
    #[error("machine {machine} was woken but {error}")]
    NotHealthy {
        machine: String,
        error: crate::checks::HealthError,
    },
    /// The request may not wake a machine, or must not wait for one (the proxy answers
    /// it itself: the sleeping answer, or the wake page while `waking`).
    #[error("app {app} is asleep")]
    Asleep { app: String, waking: bool },
}

/// Why a lifecycle call could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("machine is {}, not started", .0.as_str())]
    NotRunning(MachineState),
    #[error(transparent)]
    Start(#[from] WakeError),
    #[error(transparent)]
    Exec(DriverError),
}

/// Why an update was not applied.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("machine is at version {current}, not {expected}")]
    StaleVersion { current: String, expected: String },
    #[error("machine is being destroyed")]
    Gone,
}
