//! Machines as data: records and states, the typed config (`spec`), the registry of
//! apps and machines with its SQLite `store`, leases, waits on a state, the activity
//! clock and open tunnels. Starting and stopping them is the `lifecycle`'s job.

pub mod activity;
mod app;
pub mod changes;
pub mod checks;
pub mod go_duration;
pub mod http_rules;
pub mod lease;
mod machine;
pub mod nodes;
mod normalize;
pub mod record;
pub mod registry;
pub mod spec;
pub mod store;
pub mod tunnels;
pub mod wait;

pub use machine::Machine;
pub use record::{EventSource, MachineEvent, MachineRecord, MachineState};
pub use registry::{App, Registry};
