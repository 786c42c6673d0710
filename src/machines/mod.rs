//! Machines: records, states, the registry, drivers, and the supervisor that starts,
//! stops and reaps them.

pub mod activity;
pub mod addresses;
pub mod driver;
pub mod exec;
pub mod go_duration;
pub mod lease;
pub mod log;
mod machine;
mod normalize;
pub mod operations;
pub mod process;
pub mod procfs;
pub mod reaper;
pub mod record;
mod recovery;
pub mod registry;
pub mod spec;
mod stopping;
pub mod store;
mod supervisor;
pub mod tunnels;
pub mod update;
pub mod wait;

pub use machine::Machine;
pub use record::{EventSource, MachineRecord, MachineState};
pub use registry::{App, Registry};
pub use stopping::StopRequest;
pub use supervisor::{Settings, Supervisor};
