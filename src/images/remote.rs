//! Registries to pull from: credentials by host, and which ones speak plain HTTP or
//! self-signed TLS (the configured insecure ones, and loopback ones as Docker allows).
//! Credentials reach skopeo in a private auth file, never on its command line (which
//! every local user can read in /proc).

use super::ImageError;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// How to talk to one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// As in references: `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub host: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Plain HTTP or an unverified certificate.
    pub insecure: bool,
}

/// skopeo's source flags for one pull; the auth file they name goes when they are dropped.
#[derive(Debug)]
pub struct SourceFlags {
    pub args: Vec<String>,
    _auth_file: Option<AuthFile>,
}

/// A 0600 `auth.json` for one pull, removed on drop.
#[derive(Debug)]
struct AuthFile(PathBuf);

impl Drop for AuthFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The flags for pulling from `host`, an auth file (if credentials are configured)
/// written in `dir`.
pub fn source_flags(
    registries: &[RegistryAuth],
    host: &str,
    dir: &Path,
) -> Result<SourceFlags, ImageError> {
    let auth = registries.iter().find(|r| same_host(&r.host, host));
    let mut args = Vec::new();
    if auth.is_some_and(|a| a.insecure) || is_loopback(host) {
        args.push("--src-tls-verify=false".to_string());
    }
    let auth_file = match auth {
        Some(RegistryAuth {
            username: Some(user),
            password,
            ..
        }) => Some(write_auth_file(
            dir,
            host,
            user,
            password.as_deref().unwrap_or_default(),
        )?),
        _ => None,
    };
    if let Some(AuthFile(path)) = &auth_file {
        args.push(format!("--src-authfile={}", path.display()));
    }
    Ok(SourceFlags {
        args,
        _auth_file: auth_file,
    })
}

/// containers-auth.json(5): `{"auths": {host: {"auth": base64(user:password)}}}`.
fn write_auth_file(
    dir: &Path,
    host: &str,
    user: &str,
    password: &str,
) -> Result<AuthFile, ImageError> {
    let name = format!(
        "auth-{}.json",
        crate::ids::hex(&crate::ids::random_bytes::<8>())
    );
    let file = AuthFile(dir.join(name));
    let auth = base64(format!("{user}:{password}").as_bytes());
    let json = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file.0)
        .and_then(|mut f| f.write_all(json.to_string().as_bytes()))
        .map_err(ImageError::io(&file.0))?;
    Ok(file)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(BASE64_ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char),
                false => out.push('='),
            }
        }
    }
    out
}

/// Docker Hub answers to several names.
fn same_host(configured: &str, host: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    configured.eq_ignore_ascii_case(host) || (hub(configured) && hub(host))
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn auth(host: &str, insecure: bool) -> RegistryAuth {
        RegistryAuth {
            host: host.into(),
            username: Some("me".into()),
            password: Some("pw".into()),
            insecure,
        }
    }

    fn args(registries: &[RegistryAuth], host: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let flags = source_flags(registries, host, dir.path()).unwrap();
        let prefix = format!("--src-authfile={}/", dir.path().display());
        flags
            .args
            .iter()
            .map(|a| a.replace(&prefix, "--src-authfile=DIR/"))
            .map(|a| {
                if a.starts_with("--src-authfile=") {
                    "--src-authfile".into()
                } else {
                    a
                }
            })
            .collect()
    }

    /// Loopback registries are pulled from without TLS checks, as Docker allows.
    #[test]
    fn loopback_hosts_are_insecure_by_default() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(host), "{host}");
            assert_eq!(args(&[], host), ["--src-tls-verify=false"]);
        }
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(args(&[], "ghcr.io").is_empty());
    }

    /// Credentials go to their own host only; `insecure` turns TLS checks off.
    #[test]
    fn credentials_match_by_host() {
        let registries = [auth("ghcr.io", false), auth("reg.internal:5000", true)];
        assert_eq!(args(&registries, "ghcr.io"), ["--src-authfile"]);
        assert_eq!(
            args(&registries, "reg.internal:5000"),
            ["--src-tls-verify=false", "--src-authfile"]
        );
        assert!(args(&registries, "quay.io").is_empty());
    }

    /// Docker Hub credentials apply whichever of its names the config uses.
    #[test]
    fn docker_hub_aliases_share_credentials() {
        assert_eq!(
            args(&[auth("index.docker.io", false)], "docker.io"),
            ["--src-authfile"]
        );
    }

    /// The auth file is private, in skopeo's format, and gone with the flags.
    #[test]
    fn auth_file_is_private_and_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let flags = source_flags(&[auth("ghcr.io", false)], "ghcr.io", dir.path()).unwrap();
        let path = flags.args[0]
            .strip_prefix("--src-authfile=")
            .unwrap()
            .to_string();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["auths"]["ghcr.io"]["auth"], "bWU6cHc=");
        drop(flags);
        assert!(!Path::new(&path).exists());
    }

    /// base64 pads one and two trailing bytes.
    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
