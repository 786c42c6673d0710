//! `ImageStore`: resolve (the wake path), pull, import, list and remove, over the
//! layout, the rootfs trees and the lock. Resolved images are kept in memory, so a
//! machine's next start costs a map lookup and one `stat`, no process.

use super::layout::{self, Descriptor, Index};
use super::tools::{self, SKOPEO, UMOCI};
use super::{IdMap, Image, ImageError, ImageInfo, Reference, RegistryAuth, StoreLock};
use super::{lock, remote, rootfs, source};
use dashmap::DashMap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store's directory under the data dir.
pub const IMAGES_DIR: &str = "images";
const LAYOUT_DIR: &str = "layout";
const ROOTFS_DIR: &str = "rootfs";
const LOCK_FILE: &str = "lock";
/// skopeo's words for "no such image or tag" (registry API errors `MANIFEST_UNKNOWN`,
/// `NAME_UNKNOWN`, or a plain 404).
const NOT_FOUND_SIGNS: [&str; 3] = ["manifest unknown", "name unknown", ": not found"];

/// The local image store; share it behind an `Arc`.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    registries: Vec<RegistryAuth>,
    id_map: Option<IdMap>,
    /// Resolved images by full reference.
    ready: DashMap<String, Image>,
    /// One turn per reference, so concurrent resolves of it pull and unpack once (one
    /// small entry per reference ever resolved).
    flights: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl ImageStore {
    /// The store in `data_dir/images/` (made on first write), pulling with
    /// `registries`' settings, unpacking trees shifted by `id_map` when given.
    pub fn new(data_dir: &Path, registries: Vec<RegistryAuth>, id_map: Option<IdMap>) -> Self {
        // Absolute, so rootfs paths handed to the sandbox do not depend on its cwd.
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.into());
        ImageStore {
            root: data_dir.join(IMAGES_DIR),
            registries,
            id_map,
            ready: DashMap::new(),
            flights: DashMap::new(),
        }
    }

    /// The image ready to run: from the store, or pulled first; its rootfs unpacked once
    /// per manifest digest (and id map) and cached. Fast when cached (in-memory map, no
    /// process spawned): it is on the wake path. A tag already in the store is not
    /// pulled again (`pull` refreshes it).
    pub async fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let reference = Reference::parse(reference)?;
        let name = reference.to_string();
        if let Some(image) = self.ready_image(&name) {
            return Ok(image);
        }
        let flight = self.flights.entry(name.clone()).or_default().clone();
        let _turn = flight.lock().await;
        if let Some(image) = self.ready_image(&name) {
            return Ok(image);
        }
        let image = self.prepare(&reference).await?;
        self.ready.insert(name, image.clone());
        Ok(image)
    }

    /// Pulls `reference` from its registry (again, if the store has it: a tag may have
    /// moved).
    pub async fn pull(&self, reference: &str) -> Result<ImageInfo, ImageError> {
        let reference = Reference::parse(reference)?;
        let name = reference.to_string();
        let _lock = self.write_lock().await?;
        self.copy_from_registry(&reference).await?;
        self.ready.remove(&name);
        self.info_locked(&name)
    }

    /// `docker save` tarball, OCI layout directory, or OCI archive (tar of a layout);
    /// `name` tags it (required when the source has no name).
    pub async fn import(
        &self,
        path: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImageInfo>, ImageError> {
        let name = name.map(Reference::parse).transpose()?;
        let copies = source::plan(path, name.as_ref()).await?;
        let _lock = self.write_lock().await?;
        let mut names = Vec::new();
        for copy in copies {
            let name = copy.name.to_string();
            let args = ["copy", "--quiet", &copy.source, &self.tool_image(&name)?];
            tools::run(SKOPEO, &args.map(String::from)).await?;
            self.ready.remove(&name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.iter().map(|n| self.info_locked(n)).collect()
    }

    /// Every named image in the store, by reference. Reads without the lock, unless it
    /// catches `index.json` mid-write: then it waits for the writer (blocking).
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let index = match self.index_unlocked()? {
            Some(index) => index,
            None => {
                let _lock = lock::shared_blocking(&self.lock_path())?;
                layout::read_index(&self.layout_dir())?
            }
        };
        let mut infos = index
            .manifests
            .iter()
            .filter_map(|entry| Some(self.info(entry.ref_name()?, entry)))
            .collect::<Result<Vec<_>, _>>()?;
        infos.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(infos)
    }

    /// Untags, then drops blobs and unpacked rootfs trees no longer referenced (`umoci gc`).
    pub async fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let name = Reference::parse(reference)?.to_string();
        let _lock = self.write_lock().await?;
        let Some(entry) = self.entry_locked(&name)? else {
            return Err(ImageError::NotFound(name));
        };
        let tree = self
            .root
            .join(ROOTFS_DIR)
            .join(rootfs::dir_name(&entry.digest, None));
        if self.only_name_of(&entry.digest, &name)? && rootfs::mounted_over(&tree) {
            return Err(ImageError::InUse(name));
        }
        let layout = self.layout_dir().display().to_string();
        tools::run(
            UMOCI,
            &[
                "rm".into(),
                format!("--image={}", self.tool_image_path(&name)?),
            ],
        )
        .await?;
        tools::run(UMOCI, &["gc".into(), format!("--layout={layout}")]).await?;
        let index = layout::read_index(&self.layout_dir())?;
        let kept: HashSet<String> = index
            .manifests
            .iter()
            .map(|e| rootfs::dir_name(&e.digest, None))
            .collect();
        rootfs::prune(&self.root.join(ROOTFS_DIR), &kept).await?;
        self.ready
            .retain(|key, image| *key != name && image.rootfs.is_dir());
        Ok(())
    }

    /// A resolved image whose tree is still there (another process may have removed it).
    fn ready_image(&self, name: &str) -> Option<Image> {
        let image = self.ready.get(name)?.clone();
        if image.rootfs.is_dir() {
            return Some(image);
        }
        self.ready.remove(name);
        None
    }

    /// Stored and unpacked already: read its config, no lock. Otherwise, under the lock,
    /// pull what is missing and unpack.
    async fn prepare(&self, reference: &Reference) -> Result<Image, ImageError> {
        let name = reference.to_string();
        if let Some(index) = self.index_unlocked()?
            && let Some(entry) = layout::find(&index, &name)
            && self.rootfs_path(&entry.digest).is_dir()
        {
            return self.image(name, entry);
        }
        let _lock = self.write_lock().await?;
        if self.entry_locked(&name)?.is_none() {
            self.copy_from_registry(reference).await?;
        }
        let entry = self.entry_locked(&name)?;
        let entry = entry.ok_or_else(|| ImageError::NotFound(name.clone()))?;
        let tree = self.rootfs_path(&entry.digest);
        if !tree.is_dir() {
            rootfs::unpack(&self.layout_dir(), &name, &tree, self.id_map).await?;
        }
        self.image(name, &entry)
    }

    fn image(&self, name: String, entry: &Descriptor) -> Result<Image, ImageError> {
        let manifest = layout::manifest(&self.layout_dir(), entry)?;
        Ok(Image {
            reference: name,
            digest: entry.digest.clone(),
            rootfs: self.rootfs_path(&entry.digest),
            config: layout::run_config(&self.layout_dir(), &manifest)?,
        })
    }

    async fn copy_from_registry(&self, reference: &Reference) -> Result<(), ImageError> {
        let name = reference.to_string();
        // Held until skopeo is done: dropping it removes the auth file.
        let flags = remote::source_flags(&self.registries, &reference.registry, &self.root)?;
        let mut args = vec!["copy".to_string(), "--quiet".to_string()];
        args.extend(flags.args.iter().cloned());
        args.push(format!("docker://{name}"));
        args.push(self.tool_image(&name)?);
        let result = tools::run(SKOPEO, &args).await;
        result.map(drop).map_err(|e| self.pull_error(&name, e))
    }

    /// A failed skopeo pull, said as what it means: no such image, or the registry's fault
    /// (unless the store's side failed: a missing tool, our own layout).
    fn pull_error(&self, name: &str, error: ImageError) -> ImageError {
        let ImageError::Tool { message, .. } = &error else {
            return error;
        };
        let ours = message.contains(&self.layout_dir().display().to_string());
        if ours || message.starts_with("not installed") {
            return error;
        }
        if NOT_FOUND_SIGNS.iter().any(|sign| message.contains(sign)) {
            return ImageError::NotFound(name.to_string());
        }
        let prefix = format!("initializing source docker://{name}: ");
        ImageError::Registry {
            reference: name.to_string(),
            reason: message.strip_prefix(&prefix).unwrap_or(message).to_string(),
        }
    }

    fn info_locked(&self, name: &str) -> Result<ImageInfo, ImageError> {
        let entry = self.entry_locked(name)?;
        let entry = entry.ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        self.info(name, &entry)
    }

    fn info(&self, name: &str, entry: &Descriptor) -> Result<ImageInfo, ImageError> {
        let manifest = layout::manifest(&self.layout_dir(), entry)?;
        Ok(ImageInfo {
            reference: name.to_string(),
            digest: entry.digest.clone(),
            size: layout::image_size(entry, &manifest),
        })
    }

    /// `index.json` as it is, or `None` if caught mid-write (skopeo rewrites it in place).
    fn index_unlocked(&self) -> Result<Option<Index>, ImageError> {
        match layout::read_index(&self.layout_dir()) {
            Ok(index) => Ok(Some(index)),
            Err(ImageError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entry named `name`, read by the lock's holder (no writer can be at work).
    /// Whether `name` is the only name the store has for `digest` (removing it drops
    /// the digest's trees).
    fn only_name_of(&self, digest: &str, name: &str) -> Result<bool, ImageError> {
        let index = layout::read_index(&self.layout_dir())?;
        Ok(!index
            .manifests
            .iter()
            .any(|e| e.digest == digest && e.ref_name() != Some(name)))
    }

    fn entry_locked(&self, name: &str) -> Result<Option<Descriptor>, ImageError> {
        Ok(layout::find(&layout::read_index(&self.layout_dir())?, name).cloned())
    }

    async fn write_lock(&self) -> Result<lock::StoreLock, ImageError> {
        self.make_root()?;
        let rootfs = self.root.join(ROOTFS_DIR);
        std::fs::create_dir_all(&rootfs).map_err(ImageError::io(&rootfs))?;
        let lock = lock::exclusive(&self.lock_path()).await?;
        self.remove_stale_auth_files();
        Ok(lock)
    }

    /// Registry credentials are written only for a pull under the exclusive lock: any
    /// left when it is taken were left by a crash.
    fn remove_stale_auth_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("auth-") && name.ends_with(".json") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The store's directory, root's alone (0700): unpacked trees keep their setuid
    /// bits, file capabilities and device nodes, which no other host user may reach.
    fn make_root(&self) -> Result<(), ImageError> {
        crate::files::dir_with_mode(&self.root, 0o700).map_err(ImageError::io(&self.root))
    }

    /// Holds the store's shared lock (blocking): while held, no tree is removed, so a
    /// machine's start can check its tree and mount over it.
    pub fn hold_trees(&self) -> Result<StoreLock, ImageError> {
        self.make_root()?;
        lock::shared_blocking(&self.lock_path())
    }

    /// skopeo's name for image `name` in the store: `oci:<layout>:<name>`.
    fn tool_image(&self, name: &str) -> Result<String, ImageError> {
        Ok(format!("oci:{}", self.tool_image_path(name)?))
    }

    /// `<layout>:<name>`, as umoci (and skopeo after `oci:`) take it; both split at the
    /// first `:`, so the layout's path must have none.
    fn tool_image_path(&self, name: &str) -> Result<String, ImageError> {
        let layout = self.layout_dir();
        match layout.to_str().filter(|p| !p.contains(':')) {
            Some(path) => Ok(format!("{path}:{name}")),
            None => Err(ImageError::Io {
                path: layout,
                source: std::io::Error::other("skopeo and umoci cannot use a path with ':'"),
            }),
        }
    }

    fn rootfs_path(&self, digest: &str) -> PathBuf {
        self.root
            .join(ROOTFS_DIR)
            .join(rootfs::dir_name(digest, self.id_map))
    }

    /// The OCI layout every image is kept in (pulls write their blobs under it).
    pub fn layout_dir(&self) -> PathBuf {
        self.root.join(LAYOUT_DIR)
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
}
