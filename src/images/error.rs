//! What can go wrong with an image, and which side it was: the reference (the caller),
//! the registry or the source file (outside), or the store and its tools (this host).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry, the store or the source has no such image or tag.
    #[error("image not found: {0}")]
    NotFound(String),
    /// The registry could not be reached or refused us (skopeo's own words, trimmed).
    #[error("pulling {reference}: {reason}")]
    Registry { reference: String, reason: String },
    #[error("bad image reference {0}")]
    BadReference(String),
    /// A running machine's root is mounted over the image's tree.
    #[error("image {0} is in use by a running machine: stop it first")]
    InUse(String),
    /// A file to import that is none of the formats skopeo reads, or names no image.
    #[error("cannot import {path}: {reason}", path = .path.display())]
    BadSource { path: PathBuf, reason: String },
    /// skopeo, umoci or tar missing or failed.
    #[error("{tool}: {message}")]
    Tool { tool: &'static str, message: String },
    /// A JSON file of the store (or of a source) that does not parse.
    #[error("unreadable {path}: {reason}", path = .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImageError {
    /// An I/O error about `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
        move |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
