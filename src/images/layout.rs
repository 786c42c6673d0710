//! Reading an OCI image layout: `index.json` (which name points at which manifest),
//! then the manifest and the image config blobs. skopeo writes OCI media types; Docker
//! schema 2 manifests have the same fields and are read alike.

use super::{ImageError, RunConfig};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The annotation that names an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation for the full image name (its exports tag only `ref.name`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Media types of a list of manifests (one per platform), which we do not follow.
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, Default, Deserialize)]
pub struct Index {
    /// umoci writes `null` for an empty list.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
}

/// A pointer to a blob: its digest and size.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ContainerConfig>,
}

/// The `config` object of an image config; every field may be absent or null.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

impl Descriptor {
    /// The name this entry of an index carries, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }
}

/// `dir/index.json`; a layout not yet written is empty.
pub fn read_index(dir: &Path) -> Result<Index, ImageError> {
    let path = dir.join("index.json");
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
        Err(e) => Err(ImageError::io(&path)(e)),
    }
}

/// The entry named `name` (the last one, as a later write wins).
pub fn find<'a>(index: &'a Index, name: &str) -> Option<&'a Descriptor> {
    index
        .manifests
        .iter()
        .rev()
        .find(|d| d.ref_name() == Some(name))
}

/// The manifest an index entry points at.
pub fn manifest(dir: &Path, entry: &Descriptor) -> Result<Manifest, ImageError> {
    let path = blob_path(dir, &entry.digest)?;
    if INDEX_TYPES.contains(&entry.media_type.as_str()) {
        let reason = "a multi-platform index: copy one platform's image".to_string();
        return Err(ImageError::Corrupt { path, reason });
    }
    parse(&path, &read(&path)?)
}

/// What the image runs, from its config blob.
pub fn run_config(dir: &Path, manifest: &Manifest) -> Result<RunConfig, ImageError> {
    let path = blob_path(dir, &manifest.config.digest)?;
    let blob: ConfigBlob = parse(&path, &read(&path)?)?;
    let config = blob.config.unwrap_or_default();
    Ok(RunConfig {
        entrypoint: config.entrypoint.unwrap_or_default(),
        cmd: config.cmd.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        working_dir: config.working_dir.filter(|w| !w.is_empty()),
        user: config.user.filter(|u| !u.is_empty()),
    })
}

/// Bytes of every blob of the image: manifest, config and layers.
pub fn image_size(entry: &Descriptor, manifest: &Manifest) -> u64 {
    let layers: u64 = manifest.layers.iter().map(|l| l.size).sum();
    entry.size + manifest.config.size + layers
}

/// `blobs/<algorithm>/<hex>`, for well-formed digests only (an index is data: a digest
/// like `sha256:../../x` must not become a path).
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    match digest.split_once(':') {
        Some((algorithm, hex))
            if matches!(algorithm, "sha256" | "sha512")
                && !hex.is_empty()
                && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(dir.join("blobs").join(algorithm).join(hex))
        }
        _ => Err(ImageError::Corrupt {
            path: dir.join("index.json"),
            reason: format!("malformed digest {digest:?}"),
        }),
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(ImageError::io(path))
}

/// JSON of `path`, or why not.
pub fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"architecture":"amd64","config":{"User":"1000","Env":["FOO=bar","PATH=/bin"],
        "Entrypoint":["/bin/x"],"Cmd":null,"WorkingDir":"/srv"},"rootfs":{"type":"layers","diff_ids":[]}}"#;

    fn write_blob(dir: &Path, bytes: &str) -> String {
        let hex = format!("{:064x}", bytes.len());
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    /// index.json → manifest → config gives what the image runs, nulls as empty.
    #[test]
    fn run_config_follows_index_manifest_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_blob(dir.path(), CONFIG);
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":10}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{:064x}","size":100}}]}}"#,
            0
        );
        let manifest_digest = write_blob(dir.path(), &manifest);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "digest":"{manifest_digest}","size":5,"annotations":{{"{REF_NAME}":"h/r:v1"}}}}]}}"#
        );
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        let index = read_index(dir.path()).unwrap();
        let entry = find(&index, "h/r:v1").unwrap();
        let manifest = super::manifest(dir.path(), entry).unwrap();
        let run = run_config(dir.path(), &manifest).unwrap();
        assert_eq!(run.entrypoint, ["/bin/x"]);
        assert!(run.cmd.is_empty());
        assert_eq!(run.env, ["FOO=bar", "PATH=/bin"]);
        assert_eq!(
            (run.working_dir.as_deref(), run.user.as_deref()),
            (Some("/srv"), Some("1000"))
        );
        assert_eq!(image_size(entry, &manifest), 115);
    }

    /// A store with no index yet, or an emptied one (umoci writes `null`), holds nothing.
    #[test]
    fn missing_or_null_index_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_index(dir.path()).unwrap().manifests.is_empty());
        let emptied = r#"{"schemaVersion":2,"manifests":null}"#;
        std::fs::write(dir.path().join("index.json"), emptied).unwrap();
        assert!(read_index(dir.path()).unwrap().manifests.is_empty());
    }

    /// A digest that would walk out of `blobs/` is refused.
    #[test]
    fn malformed_digests_are_not_paths() {
        let dir = Path::new("/store");
        assert!(blob_path(dir, "sha256:../../etc/passwd").is_err());
        assert!(blob_path(dir, "md5:abc").is_err());
        assert_eq!(
            blob_path(dir, "sha256:ab12").unwrap(),
            Path::new("/store/blobs/sha256/ab12")
        );
    }

    /// A truncated index.json (caught mid-write) is an error, not an empty store.
    #[test]
    fn torn_index_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[{"#,
        )
        .unwrap();
        assert!(matches!(
            read_index(dir.path()),
            Err(ImageError::Corrupt { .. })
        ));
    }
}
