//! Connection policies: the limits and timeouts every HTTP connection edgewake serves
//! (the edge's clients, the Machines API) and every connection it makes to a machine
//! lives under, kept apart from the protocol code so that any HTTP/1.1 path reuses
//! them. `deadline` keeps a connection's timer for each kind of wait; `pace` enforces
//! how slow a peer may be (bodies; `io` writes); `serve` drives one hyper connection
//! under a `ClientPolicy`: header and idle timeouts, HTTP/2 keep-alive PINGs, and a
//! graceful shutdown that is cut after its grace; `stall` cuts the HTTP/2 answers a
//! client does not take, on that connection's tick.

pub mod deadline;
pub mod io;
pub mod pace;
pub mod serve;
pub mod stall;

pub use deadline::WaitTimer;
pub use io::PacedIo;
pub use pace::{BodyError, BoxError, Pace, PacedBody, Progress, TooSlow};
pub use serve::{Guarded, builder, serve_connection};
pub use stall::{Answers, Watched};

use crate::config::Config;
use std::time::Duration;

/// How a client connection is served.
#[derive(Debug, Clone, Copy)]
pub struct ClientPolicy {
    /// How long a client may take to send a request's headers (and, on HTTP/1.1, to
    /// start the next request on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    /// How long a connection told to close (idle, or the server shutting down) may take
    /// to finish its requests (and an HTTP/2 client to acknowledge GOAWAY) before it
    /// is cut.
    pub shutdown_grace: Duration,
    /// HTTP/2: a PING every `interval` of silence, and the connection closed when one is
    /// not answered within `timeout`.
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    /// Reads of request bodies.
    pub body: Pace,
    /// Writes to the client, and on HTTP/2 each answer's wait for the client to take
    /// it (`stall`).
    pub send: Pace,
}

/// How edgewake's connections to machines are paced.
#[derive(Debug, Clone, Copy)]
pub struct MachinePolicy {
    /// Waiting for the machine's answer, and for each next part of its body.
    pub read: Pace,
    /// Writes to the machine (a machine that stops reading a request body).
    pub send: Pace,
}

/// How many connections to machines edgewake may hold.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    /// Across all machines (each is a file descriptor).
    pub max_connections: usize,
    /// To one machine, for requests that share pooled connections (HTTP/2 clients,
    /// upgrades, h2c backends); more requests wait for one to be free.
    pub max_per_machine: usize,
    /// Edge workers: the fast path parks machine connections in a lot per worker (and
    /// one for the main runtime).
    pub workers: usize,
}

impl ClientPolicy {
    /// How the edge's client connections are served.
    pub fn for_edge(config: &Config) -> ClientPolicy {
        let edge = &config.edge;
        ClientPolicy {
            header_read_timeout: edge.header_read_timeout,
            idle_timeout: edge.keepalive_timeout,
            max_header_count: edge.max_header_count,
            max_header_bytes: edge.max_header_bytes,
            shutdown_grace: edge.drain_timeout,
            h2_keepalive_interval: edge.h2_keepalive_interval,
            h2_keepalive_timeout: edge.h2_keepalive_timeout,
            body: Pace {
                timeout: edge.client_body_timeout,
                min_rate: edge.client_min_rate,
            },
            send: Pace {
                timeout: edge.client_send_timeout,
                min_rate: edge.client_min_rate,
            },
        }
    }

    /// The API's connections: the edge's policy with the API's header and idle timeouts.
    pub fn for_api(config: &Config) -> ClientPolicy {
        ClientPolicy {
            header_read_timeout: config.api.header_read_timeout,
            idle_timeout: config.api.idle_timeout,
            ..ClientPolicy::for_edge(config)
        }
    }
}

impl MachinePolicy {
    pub fn from_config(config: &Config) -> MachinePolicy {
        MachinePolicy {
            read: Pace::timeout(config.edge.machine_read_timeout),
            send: Pace::timeout(config.edge.machine_send_timeout),
        }
    }
}

impl UpstreamLimits {
    pub fn from_config(config: &Config) -> UpstreamLimits {
        UpstreamLimits {
            max_connections: config.edge.max_upstream_connections,
            max_per_machine: config.edge.max_machine_connections,
            workers: config.edge.workers,
        }
    }
}
