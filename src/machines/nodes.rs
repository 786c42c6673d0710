//! The nodes of a cluster as every part of this one sees them: where each is reached
//! (backhaul and API), what its heartbeat last said, and whether it is up — a flag the
//! request path reads without locks for every machine it considers.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// What a node says about itself in each heartbeat (the nodes bucket's value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub region: String,
    /// Where other edges send requests for its machines.
    pub backhaul: SocketAddr,
    /// Where other nodes forward Machines API calls for its machines.
    pub api: SocketAddr,
    /// When the heartbeat was sent, in milliseconds since the Unix epoch (its clock).
    pub heartbeat_ms: u64,
    /// How many machines it hosts.
    pub machines: usize,
}

/// Another node of the cluster (this node is never one: its machines have no node).
#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// Whether its heartbeats are fresh: machines of a node that is down are skipped.
    up: AtomicBool,
    /// What its last heartbeat said; `None` until one has arrived.
    facts: Mutex<Option<NodeFacts>>,
}

impl Node {
    /// A node seen for the first time: down until a fresh heartbeat of its own says it
    /// is up. A node known only from its machines' records (it left, or its heartbeat
    /// has not been heard yet) has no backhaul to reach it at: its machines are
    /// skipped, as a down node's are, rather than tried by every request.
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            up: AtomicBool::new(false),
            facts: Mutex::new(None),
        }
    }

    // Relaxed: the flag stands alone (no other memory is published through it), and a
    // request that reads it a moment late only tries the backhaul, which fails over.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn facts(&self) -> MutexGuard<'_, Option<NodeFacts>> {
        self.facts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where its backhaul listens, once its first heartbeat has said.
    pub fn backhaul(&self) -> Option<SocketAddr> {
        self.facts().as_ref().map(|f| f.backhaul)
    }

    /// Where its Machines API listens, once its first heartbeat has said.
    pub fn api(&self) -> Option<SocketAddr> {
        self.facts().as_ref().map(|f| f.api)
    }

    pub fn region(&self) -> Option<String> {
        self.facts().as_ref().map(|f| f.region.clone())
    }
}
