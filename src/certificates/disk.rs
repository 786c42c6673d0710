//! Certificates and their keys in the data dir: `certificates/<host>/<source>.pem`, the
//! chain then the key in one file (so a crash can never pair a new certificate with an
//! old key), readable by the owner only; a wildcard's directory is `_.example.com`.

use crate::tls::dev_ca::stem_for_host;
use std::io;
use std::path::{Path, PathBuf};

/// Directory of the data dir holding them.
pub const CERTIFICATES_DIR: &str = "certificates";

/// Where a hostname's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Imported through the API.
    Custom,
    /// Issued by the ACME CA.
    Acme,
}

impl Source {
    fn file(self) -> &'static str {
        match self {
            Source::Custom => "custom.pem",
            Source::Acme => "acme.pem",
        }
    }
}

pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    pub fn new(data_dir: &Path) -> Disk {
        Disk {
            dir: data_dir.join(CERTIFICATES_DIR),
        }
    }

    fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(stem_for_host(host))
    }

    /// Keeps `pem` (chain then key) as the hostname's certificate from `source`.
    pub fn write(&self, host: &str, source: Source, pem: &str) -> io::Result<()> {
        let dir = self.host_dir(host);
        crate::files::dir_with_mode(&self.dir, 0o700)?;
        crate::files::dir_with_mode(&dir, 0o700)?;
        crate::files::write_private(&dir.join(source.file()), pem.as_bytes())
    }

    /// The kept certificate from `source`, if there is one.
    pub fn read(&self, host: &str, source: Source) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.host_dir(host).join(source.file())) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn remove(&self, host: &str, source: Source) -> io::Result<()> {
        match std::fs::remove_file(self.host_dir(host).join(source.file())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes everything kept for a hostname.
    pub fn remove_host(&self, host: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.host_dir(host)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Kept files are private, read back, and go with their hostname.
    #[test]
    fn kept_private_and_removed() {
        let data = tempfile::tempdir().unwrap();
        let disk = Disk::new(data.path());
        disk.write("*.example.org", Source::Acme, "chain+key")
            .unwrap();
        let file = data.path().join("certificates/_.example.org/acme.pem");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            disk.read("*.example.org", Source::Acme).unwrap().as_deref(),
            Some("chain+key")
        );
        assert_eq!(disk.read("*.example.org", Source::Custom).unwrap(), None);
        disk.remove_host("*.example.org").unwrap();
        assert!(!file.exists());
    }
}
