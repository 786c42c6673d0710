//! Files to import: a `docker save` tarball, an OCI layout directory or an OCI archive
//! (a tar of a layout). Which one it is, which images it holds and what they are named,
//! turned into the skopeo copies that bring them into the store.

use super::layout::{self, CONTAINERD_NAME, Descriptor};
use super::tools::{self, TAR};
use super::{ImageError, Reference};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One skopeo copy: from `source` (a skopeo image name) into the store as `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub source: String,
    pub name: Reference,
}

/// One image of a source file and the names it carries.
#[derive(Debug)]
struct Found {
    /// What follows `transport:path:` to pick it (none: the only image).
    selector: Option<String>,
    names: Vec<Reference>,
    /// How to mention it in an error.
    label: String,
}

/// An entry of a `docker save` tarball's `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

/// The copies that import `path`, every image under its own names, or the one image
/// it holds under `name`.
pub async fn plan(path: &Path, name: Option<&Reference>) -> Result<Vec<Copy>, ImageError> {
    let bad = |reason: String| ImageError::BadSource {
        path: path.to_path_buf(),
        reason,
    };
    let text = path.to_str().filter(|p| !p.contains(':'));
    let text = text.ok_or_else(|| bad("skopeo cannot read a path with ':' in it".into()))?;
    let (transport, found) = read_source(path).await?;
    let copy = |selector: &Option<String>, name: &Reference| Copy {
        source: match selector {
            Some(s) => format!("{transport}:{text}:{s}"),
            None => format!("{transport}:{text}"),
        },
        name: name.clone(),
    };
    match (name, found.as_slice()) {
        (_, []) => Err(bad("it holds no image".into())),
        (Some(name), [one]) => Ok(vec![copy(&one.selector, name)]),
        (Some(_), many) => Err(bad(format!(
            "it holds {} images: a name tags one only",
            many.len()
        ))),
        (None, all) => all
            .iter()
            .map(|f| match f.names.is_empty() {
                true => Err(bad(format!(
                    "{} has no image name: give it one to import it under",
                    f.label
                ))),
                false => Ok(f
                    .names
                    .iter()
                    .map(|n| copy(&f.selector, n))
                    .collect::<Vec<_>>()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|copies| copies.concat()),
    }
}

/// The skopeo transport that reads `path`, and the images in it.
async fn read_source(path: &Path) -> Result<(&'static str, Vec<Found>), ImageError> {
    if path.is_dir() {
        let index = layout::read_index(path)?;
        if !path.join("oci-layout").is_file() {
            return Err(ImageError::BadSource {
                path: path.to_path_buf(),
                reason: "a directory without an oci-layout file is not an OCI layout".into(),
            });
        }
        return Ok(("oci", oci_images(&index.manifests)?));
    }
    std::fs::metadata(path).map_err(ImageError::io(path))?;
    if let Some(bytes) = member(path, "manifest.json").await {
        let entries: Vec<ArchiveEntry> = layout::parse(&path.join("manifest.json"), &bytes)?;
        return Ok(("docker-archive", docker_images(&entries)?));
    }
    if let Some(bytes) = member(path, "index.json").await {
        let index: layout::Index = layout::parse(&path.join("index.json"), &bytes)?;
        return Ok(("oci-archive", oci_images(&index.manifests)?));
    }
    Err(ImageError::BadSource {
        path: path.to_path_buf(),
        reason: "not a docker save tarball nor an OCI archive (no manifest.json or index.json)"
            .into(),
    })
}

/// One file of a tar archive (by the tar tool), if the archive has it.
async fn member(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let args = [
        "-xOf".to_string(),
        archive.display().to_string(),
        name.to_string(),
    ];
    tools::run(TAR, &args).await.ok()
}

/// A `docker save` tarball's images, picked by position (`@N`), named by `RepoTags`.
fn docker_images(entries: &[ArchiveEntry]) -> Result<Vec<Found>, ImageError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let tags = entry.repo_tags.as_deref().unwrap_or_default();
            Ok(Found {
                selector: Some(format!("@{i}")),
                names: tags
                    .iter()
                    .map(|t| Reference::parse(t))
                    .collect::<Result<_, _>>()?,
                label: format!("image {} of the tarball", i + 1),
            })
        })
        .collect()
}

/// An OCI index's images, one per manifest digest, picked by their `ref.name`; a
/// `ref.name` that is a full reference names the image, a bare tag (`v1`) does not.
fn oci_images(manifests: &[Descriptor]) -> Result<Vec<Found>, ImageError> {
    let mut found: Vec<(String, Found)> = Vec::new();
    for entry in manifests {
        let names = oci_names(entry)?;
        match found.iter_mut().find(|(digest, _)| *digest == entry.digest) {
            Some((_, same)) => same.names.extend(names),
            None => found.push((entry.digest.clone(), oci_found(entry, names))),
        }
    }
    let unselectable = found.len() > 1 && found.iter().any(|(_, f)| f.selector.is_none());
    if unselectable {
        return Err(ImageError::BadSource {
            path: PathBuf::from("index.json"),
            reason: "several images, some without a ref.name to pick them by".into(),
        });
    }
    Ok(found.into_iter().map(|(_, f)| f).collect())
}

fn oci_found(entry: &Descriptor, names: Vec<Reference>) -> Found {
    Found {
        selector: entry.ref_name().map(str::to_string),
        label: match entry.ref_name() {
            Some(tag) => format!("the image tagged {tag:?}"),
            None => format!("image {}", entry.digest),
        },
        names,
    }
}

fn oci_names(entry: &Descriptor) -> Result<Vec<Reference>, ImageError> {
    let full = entry.annotations.get(CONTAINERD_NAME).map(String::as_str);
    let full = full.or(entry.ref_name().filter(|n| !Reference::is_bare_tag(n)));
    full.map(Reference::parse).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(digest: &str, annotations: &[(&str, &str)]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: digest.into(),
            size: 1,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Full references in `ref.name` name images; bare tags only select them.
    #[test]
    fn oci_ref_names_name_or_select() {
        let found = oci_images(&[
            entry("sha256:1", &[(layout::REF_NAME, "v1")]),
            entry("sha256:2", &[(layout::REF_NAME, "example.com/app:v2")]),
            entry("sha256:2", &[(layout::REF_NAME, "nginx:1")]),
        ])
        .unwrap();
        assert_eq!(found.len(), 2);
        assert!(found[0].names.is_empty());
        assert_eq!(found[0].selector.as_deref(), Some("v1"));
        let names: Vec<String> = found[1].names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["example.com/app:v2", "docker.io/library/nginx:1"]);
    }

    /// containerd's full name wins over its bare `ref.name` tag.
    #[test]
    fn containerd_name_is_used() {
        let found = oci_images(&[entry(
            "sha256:1",
            &[
                (layout::REF_NAME, "v1"),
                (CONTAINERD_NAME, "ghcr.io/o/app:v1"),
            ],
        )])
        .unwrap();
        assert_eq!(found[0].names[0].to_string(), "ghcr.io/o/app:v1");
    }

    /// `docker save` entries are picked by position and named by their RepoTags.
    #[test]
    fn docker_entries_by_position() {
        let entries: Vec<ArchiveEntry> =
            serde_json::from_str(r#"[{"RepoTags":["app:v1","app:v2"]},{"RepoTags":null}]"#)
                .unwrap();
        let found = docker_images(&entries).unwrap();
        assert_eq!(found[0].selector.as_deref(), Some("@0"));
        assert_eq!(found[0].names[1].to_string(), "docker.io/library/app:v2");
        assert_eq!(found[1].selector.as_deref(), Some("@1"));
        assert!(found[1].names.is_empty());
    }
}
