//! Which config file every command reads, wherever it is started: `--config`, else
//! `EDGEWAKE_CONFIG`, else `./config/edgewake.toml`, else `/etc/edgewake/edgewake.toml`,
//! else none (built-in defaults). A file named by the flag or the variable must exist;
//! the two usual places are only looked at.

use super::{Config, ConfigErrors, DEFAULT_CONFIG_PATH, SYSTEM_CONFIG_PATH};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "EDGEWAKE_CONFIG";

/// How the config file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Flag,
    Environment,
    WorkingDir,
    System,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigSource::Flag => "--config",
            ConfigSource::Environment => "$EDGEWAKE_CONFIG",
            ConfigSource::WorkingDir => "the current directory",
            ConfigSource::System => "the system config",
        })
    }
}

/// The config file to read, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    File {
        path: PathBuf,
        source: ConfigSource,
    },
    /// No file anywhere: built-in defaults.
    Nowhere,
}

impl Located {
    /// Finds the config: `flag`, then `$EDGEWAKE_CONFIG`, then the usual places.
    pub fn find(flag: Option<&Path>) -> Located {
        let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
        Located::find_among(flag, env.as_deref().map(Path::new), |p| p.is_file())
    }

    /// `find`, with the variable's value and the file test given (for tests).
    fn find_among(
        flag: Option<&Path>,
        env: Option<&Path>,
        exists: impl Fn(&Path) -> bool,
    ) -> Located {
        let named = [(flag, ConfigSource::Flag), (env, ConfigSource::Environment)];
        if let Some((path, source)) = named.iter().find_map(|(p, s)| Some((p.as_ref()?, *s))) {
            return Located::File {
                path: path.to_path_buf(),
                source,
            };
        }
        [
            (DEFAULT_CONFIG_PATH, ConfigSource::WorkingDir),
            (SYSTEM_CONFIG_PATH, ConfigSource::System),
        ]
        .into_iter()
        .find(|(path, _)| exists(Path::new(path)))
        .map_or(Located::Nowhere, |(path, source)| Located::File {
            path: PathBuf::from(path),
            source,
        })
    }

    /// The file, if one was found.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Located::File { path, .. } => Some(path),
            Located::Nowhere => None,
        }
    }

    /// Reads the file (every problem at once, the file named), or the defaults.
    pub fn load(&self) -> Result<Config, LoadError> {
        match self {
            Located::File { path, .. } => Config::load(path).map_err(|errors| LoadError {
                path: path.clone(),
                errors,
            }),
            Located::Nowhere => Ok(Config::default()),
        }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Located::File { path, source } => write!(f, "{} (from {source})", path.display()),
            Located::Nowhere => write!(
                f,
                "no config file (none given with --config or ${CONFIG_ENV}, none at \
                 ./{DEFAULT_CONFIG_PATH} or {SYSTEM_CONFIG_PATH})"
            ),
        }
    }
}

/// A config file that cannot be used, and every reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {errors}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub errors: ConfigErrors,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag wins over the variable, the variable over the usual places, which are
    /// tried in order; with nothing anywhere, the defaults.
    #[test]
    fn lookup_order() {
        let (flag, env) = (Path::new("/a.toml"), Path::new("/b.toml"));
        let everywhere = |_: &Path| true;
        let file = |path: &str, source| Located::File {
            path: path.into(),
            source,
        };
        assert_eq!(
            Located::find_among(Some(flag), Some(env), everywhere),
            file("/a.toml", ConfigSource::Flag)
        );
        assert_eq!(
            Located::find_among(None, Some(env), everywhere),
            file("/b.toml", ConfigSource::Environment)
        );
        assert_eq!(
            Located::find_among(None, None, everywhere),
            file(DEFAULT_CONFIG_PATH, ConfigSource::WorkingDir)
        );
        let system_only = |p: &Path| p == Path::new(SYSTEM_CONFIG_PATH);
        assert_eq!(
            Located::find_among(None, None, system_only),
            file(SYSTEM_CONFIG_PATH, ConfigSource::System)
        );
        assert_eq!(Located::find_among(None, None, |_| false), Located::Nowhere);
    }

    /// Relative paths in a file are read from the file's directory, so the same file
    /// means the same data dir wherever edgewake starts.
    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgewake.toml");
        std::fs::write(
            &path,
            "data_dir = \"../data\"\n[tls]\ncerts_dir = \"/abs/certs\"\n",
        )
        .unwrap();
        let config = Located::File {
            path,
            source: ConfigSource::Flag,
        }
        .load()
        .unwrap();
        assert_eq!(config.data_dir, dir.path().join("../data"));
        assert_eq!(config.tls.certs_dir, Path::new("/abs/certs"));
    }
}
