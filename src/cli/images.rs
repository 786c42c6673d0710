//! `edgewake images …`: the local image store, worked on directly in the data dir (no
//! server needed; a running server shares the store through its lock).

use super::table;
use crate::images::{ImageError, ImageInfo, ImageStore, RegistryAuth};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// How often `images pull` redraws its progress line.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Size units, as `docker images` prints them (powers of 1000).
const SIZE_UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
    /// The data dir holding the store (`<data dir>/images`) [default: the config's]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Import a `docker save` tarball, an OCI layout directory or an OCI archive.
    Import {
        /// A `docker save` tarball, an OCI layout directory or an OCI archive.
        file: PathBuf,
        /// The image's name (required when the file names none).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from its registry.
    Pull {
        /// The image, as Docker names it: `nginx`, `ghcr.io/org/app:v1`.
        reference: String,
    },
    /// List the images in the store.
    #[command(visible_alias = "ls")]
    List,
    /// Remove an image, and the blobs and unpacked trees nothing else uses.
    #[command(visible_alias = "remove")]
    Rm {
        /// The image's reference, as `images list` shows it (or a short form of it).
        reference: String,
    },
}

/// Runs an images command on the store in `--data-dir`, else in the config's
/// `data_dir`, with `registries`' settings; an error is printed on one line and `false`
/// returned.
pub fn run(args: ImagesArgs, config_data_dir: &Path, registries: Vec<RegistryAuth>) -> bool {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| config_data_dir.to_path_buf());
    let store = ImageStore::new(&data_dir, registries, None);
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Io {
            path: data_dir.clone(),
            source: e,
        })
        .and_then(|runtime| runtime.block_on(dispatch(&store, args.command)));
    match outcome {
        Ok(()) => true,
        Err(e) => {
            eprintln!("Error: {e}");
            false
        }
    }
}

async fn dispatch(store: &ImageStore, command: ImagesCommand) -> Result<(), ImageError> {
    match command {
        ImagesCommand::Import { file, name } => {
            for info in store.import(&file, name.as_deref()).await? {
                println!("imported {} {}", info.reference, info.digest);
            }
        }
        ImagesCommand::Pull { reference } => {
            let info =
                with_progress(&reference, &store.layout_dir(), store.pull(&reference)).await?;
            println!("pulled {} {}", info.reference, info.digest);
        }
        ImagesCommand::List => print!("{}", images_table(&store.list()?)),
        ImagesCommand::Rm { reference } => {
            store.remove(&reference).await?;
            println!("removed {reference}");
        }
    }
    Ok(())
}

/// Runs a pull; on a terminal, a line on stderr shows the bytes written into the store
/// so far and the time taken (skopeo says nothing until it is done).
async fn with_progress<T>(
    reference: &str,
    layout: &Path,
    pull: impl std::future::Future<Output = T>,
) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return pull.await;
    }
    let blobs = layout.join("blobs");
    let before = tree_size(&blobs);
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tokio::pin!(pull);
    let outcome = loop {
        tokio::select! {
            outcome = &mut pull => break outcome,
            _ = tick.tick() => {
                let received = tree_size(&blobs).saturating_sub(before);
                eprint!(
                    "\rPulling {reference}: {} received, {}s ",
                    human_size(received),
                    started.elapsed().as_secs()
                );
                let _ = std::io::stderr().flush();
            }
        }
    };
    eprint!("\r\x1b[2K");
    outcome
}

/// Bytes in the files under `dir` (0 where it cannot be read).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// REFERENCE, DIGEST, SIZE.
fn images_table(images: &[ImageInfo]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| vec![i.reference.clone(), i.digest.clone(), human_size(i.size)])
        .collect();
    table::render(&["REFERENCE", "DIGEST", "SIZE"], &rows)
}

/// `1.09MB`-style sizes: three significant digits at most, as `docker images` prints.
fn human_size(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < SIZE_UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 || unit == 0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$}{}", SIZE_UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes read like `docker images`: SI units, three significant digits.
    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_092_608), "1.09MB");
        assert_eq!(human_size(75_300_000), "75.3MB");
        assert_eq!(human_size(187_000_000_000), "187GB");
    }
}
