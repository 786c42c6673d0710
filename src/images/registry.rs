//! Registries to pull from: credentials by host, and which ones speak plain HTTP or
//! self-signed TLS (the configured insecure ones, and loopback ones as Docker allows).

use std::net::IpAddr;

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

/// skopeo's source flags for pulling from `host`.
pub(crate) fn source_flags(registries: &[RegistryAuth], host: &str) -> Vec<String> {
    let auth = registries.iter().find(|r| same_host(&r.host, host));
    let mut flags = Vec::new();
    if auth.is_some_and(|a| a.insecure) || is_loopback(host) {
        flags.push("--src-tls-verify=false".to_string());
    }
    if let Some(RegistryAuth {
        username: Some(user),
        password,
        ..
    }) = auth
    {
        let password = password.as_deref().unwrap_or_default();
        flags.push(format!("--src-creds={user}:{password}"));
    }
    flags
}

/// Docker Hub answers to several names.
fn same_host(configured: &str, host: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    configured.eq_ignore_ascii_case(host) || (hub(configured) && hub(host))
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub(crate) fn is_loopback(host: &str) -> bool {
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

    fn auth(host: &str, insecure: bool) -> RegistryAuth {
        RegistryAuth {
            host: host.into(),
            username: Some("me".into()),
            password: Some("pw".into()),
            insecure,
        }
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
            assert_eq!(source_flags(&[], host), ["--src-tls-verify=false"]);
        }
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(source_flags(&[], "ghcr.io").is_empty());
    }

    /// Credentials go to their own host only; `insecure` turns TLS checks off.
    #[test]
    fn credentials_match_by_host() {
        let registries = [auth("ghcr.io", false), auth("reg.internal:5000", true)];
        assert_eq!(source_flags(&registries, "ghcr.io"), ["--src-creds=me:pw"]);
        assert_eq!(
            source_flags(&registries, "reg.internal:5000"),
            ["--src-tls-verify=false", "--src-creds=me:pw"]
        );
        assert!(source_flags(&registries, "quay.io").is_empty());
    }

    /// Docker Hub credentials apply whichever of its names the config uses.
    #[test]
    fn docker_hub_aliases_share_credentials() {
        let registries = [auth("index.docker.io", false)];
        assert_eq!(
            source_flags(&registries, "docker.io"),
            ["--src-creds=me:pw"]
        );
    }
}
