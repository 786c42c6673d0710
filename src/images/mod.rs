//! The local OCI image store machines run from: images pulled from registries or
//! imported from files into one content-addressed layout, and their root filesystems
//! unpacked once, ready to be the read-only lower layer of a machine's overlay.
//!
//! On disk, under `data_dir/images/`:
//! - `layout/`: one OCI image layout (skopeo writes it); `index.json` names every image
//!   by its full reference (`docker.io/library/nginx:latest`), blobs are shared by digest.
//! - `rootfs/<manifest digest hex>[-<host id>-<size>]`: unpacked trees (umoci).
//! - `lock`: flock held by every writer, server and CLI alike.
//!
//! Tools: skopeo 1.9+ (pull, import), umoci 0.4+ (unpack, untag, gc), tar (reading one
//! file of an archive to learn its format and names).

mod error;
mod layout;
mod lock;
pub use lock::StoreLock;
mod reference;
mod remote;
mod rootfs;
mod source;
mod store;
mod tools;

pub use error::ImageError;
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference};
pub use remote::RegistryAuth;
pub use store::ImageStore;
pub use tools::DEFAULT_TOOL_TIMEOUT;

use std::path::PathBuf;

/// User-namespace mapping of unpacked trees: container id 0 is `host_id`, and `size`
/// ids follow (same map for users and groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub host_id: u32,
    pub size: u32,
}

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Full, normalised reference.
    pub reference: String,
    /// Manifest digest, `sha256:…`.
    pub digest: String,
    /// The unpacked tree: read-only, shared by every machine of this image.
    pub rootfs: PathBuf,
    pub config: RunConfig,
}

/// From the image config: what runs unless the machine's `init` overrides it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub reference: String,
    pub digest: String,
    /// Bytes of its blobs (manifest, config, compressed layers); blobs shared with other
    /// images count for each.
    pub size: u64,
}
