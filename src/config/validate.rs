//! Checks on the typed values and across fields: every problem is collected, each
//! naming its key.

use super::{Config, MAX_EDGE_WORKERS, MAX_STOP_TIMEOUT};
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;
use tokio::sync::Semaphore;

/// hyper needs at least this much read buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// Every problem found in a config, in the order found.
#[derive(Debug, Default)]
pub struct ConfigErrors(Vec<String>);

impl ConfigErrors {
    pub fn single(message: String) -> Self {
        ConfigErrors(vec![message])
    }

    pub fn push(&mut self, message: String) {
        self.0.push(message);
    }

    pub fn problems(&self) -> &[String] {
        &self.0
    }

    /// The value, or `None` with its problem noted under `key`.
    pub(super) fn ok<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                self.push(format!("`{key}`: {problem}"));
                None
            }
        }
    }

    /// What `text` parses to, or `default` when the key is absent. A wrong value is
    /// noted under `key` and the default stands in, only so that the rest can still be
    /// checked: a config with problems is never used.
    pub(super) fn parsed<T>(
        &mut self,
        key: &str,
        text: Option<String>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match text {
            Some(text) => self.ok(key, parse(&text)).unwrap_or(default),
            None => default,
        }
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the config:", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        self.validate_edge(errors);
        self.validate_regions(errors);
        self.validate_sandbox(errors);
        self.validate_images(errors);
        if let Some(cluster) = &self.cluster {
            cluster.validate(self, errors);
        }
        self.validate_machines(errors);
        if let Some(acme) = &self.acme {
            acme.validate(errors);
        }
    }

    fn validate_machines(&self, errors: &mut ConfigErrors) {
        if self.machines.stop_timeout > MAX_STOP_TIMEOUT {
            errors.push(format!(
                "`machines.stop_timeout` must be at most {MAX_STOP_TIMEOUT:?}"
            ));
        }
        let limits = &self.limits;
        if limits.apps == 0 || limits.machines_per_app == 0 {
            errors.push("`limits.apps` and `limits.machines_per_app` must be at least 1".into());
        }
    }

    fn validate_edge(&self, errors: &mut ConfigErrors) {
        let edge = &self.edge;
        if edge.domains.is_empty() {
            errors.push("`edge.domains` must list at least one domain".into());
        }
        for domain in &edge.domains {
            if domain.is_empty() || domain.starts_with('.') || domain.contains(['/', ':', ' ']) {
                errors.push(format!("`edge.domains`: `{domain}` is not a domain name"));
            }
        }
        for (key, value) in [
            ("edge.idle_timeout", edge.idle_timeout),
            ("edge.wake_timeout", edge.wake_timeout),
            ("edge.probe_interval", edge.probe_interval),
            ("edge.reap_interval", edge.reap_interval),
            ("edge.header_read_timeout", edge.header_read_timeout),
            ("edge.keepalive_timeout", edge.keepalive_timeout),
            ("edge.client_body_timeout", edge.client_body_timeout),
            ("edge.client_send_timeout", edge.client_send_timeout),
            ("edge.machine_read_timeout", edge.machine_read_timeout),
            ("edge.machine_send_timeout", edge.machine_send_timeout),
            ("edge.h2_keepalive_interval", edge.h2_keepalive_interval),
            ("edge.h2_keepalive_timeout", edge.h2_keepalive_timeout),
            ("api.header_read_timeout", self.api.header_read_timeout),
            ("api.idle_timeout", self.api.idle_timeout),
            ("tls.handshake_timeout", self.tls.handshake_timeout),
        ] {
            if value == Duration::ZERO {
                errors.push(format!("`{key}` must be longer than zero"));
            }
        }
        if edge.max_header_count == 0 || edge.max_header_bytes < MIN_HEADER_BYTES {
            errors.push(format!(
                "`edge.max_header_count` must be at least 1 and `edge.max_header_bytes` at least {MIN_HEADER_BYTES}"
            ));
        }
        for (key, value) in [
            ("edge.max_connections", edge.max_connections),
            (
                "edge.max_upstream_connections",
                edge.max_upstream_connections,
            ),
            ("edge.max_machine_connections", edge.max_machine_connections),
            ("api.max_connections", self.api.max_connections),
        ] {
            if value == 0 {
                errors.push(format!("`{key}` must be at least 1"));
            }
        }
        // A connection limit is a semaphore's permits, and tokio's panics above its ceiling.
        if edge.max_connections > Semaphore::MAX_PERMITS {
            errors.push(format!(
                "`edge.max_connections` must be at most {}",
                Semaphore::MAX_PERMITS
            ));
        }
        if edge.workers > MAX_EDGE_WORKERS {
            errors.push(format!(
                "`edge.workers` must be at most {MAX_EDGE_WORKERS} (0: serve connections on the main runtime)"
            ));
        }
        for (key, path) in [
            ("geo.ipv4_db", &self.geo.ipv4_db),
            ("geo.ipv6_db", &self.geo.ipv6_db),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.exists()) {
                errors.push(format!(
                    "`{key}`: {} does not exist (see README: Geo databases)",
                    path.display()
                ));
            }
        }
        if !self.regions.iter().any(|r| r.code == edge.region) {
            errors.push(format!(
                "`edge.region`: `{}` is not listed in `regions`",
                edge.region
            ));
        }
    }

    fn validate_regions(&self, errors: &mut ConfigErrors) {
        let mut seen = HashSet::new();
        for (i, region) in self.regions.iter().enumerate() {
            let code = &region.code;
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
                errors.push(format!(
                    "`regions[{i}].code`: `{code}` is not three lowercase letters"
                ));
            }
            if !seen.insert(code) {
                errors.push(format!("`regions[{i}].code`: `{code}` is listed twice"));
            }
            if !(-90.0..=90.0).contains(&region.latitude) {
                errors.push(format!("`regions[{i}].latitude` must be within -90..90"));
            }
            if !(-180.0..=180.0).contains(&region.longitude) {
                errors.push(format!("`regions[{i}].longitude` must be within -180..180"));
            }
        }
    }

    fn validate_sandbox(&self, errors: &mut ConfigErrors) {
        let sandbox = &self.sandbox;
        if sandbox.runtime.is_empty() {
            errors.push("`sandbox.runtime` must name an OCI runtime such as runc".into());
        }
        if sandbox.rootfs_size_mb == 0 {
            errors.push("`sandbox.rootfs_size_mb` must be at least 1".into());
        }
        if sandbox.pids_limit < 2 {
            errors.push("`sandbox.pids_limit` must be at least 2".into());
        }
        if sandbox.id_map_base == 0 || sandbox.id_map_size == 0 {
            errors.push("`sandbox.id_map_base` and `id_map_size` must be above 0".into());
        }
        for (i, registry) in sandbox.registries.iter().enumerate() {
            if registry.host.is_empty() || registry.host.contains('/') {
                errors.push(format!(
                    "`sandbox.registries[{i}].host`: `{}` is not a host like registry.example.com",
                    registry.host
                ));
            }
            if registry.password.is_some() && registry.password_env.is_some() {
                errors.push(format!(
                    "`sandbox.registries[{i}]`: give `password` or `password_env`, not both"
                ));
            }
        }
    }

    fn validate_images(&self, errors: &mut ConfigErrors) {
        for (name, image) in &self.images {
            if image.command.first().is_none_or(|c| c.is_empty()) {
                errors.push(format!("`images.\"{name}\".command` must name a program"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The shipped config file is valid and sets the seed's 4 s idle timeout.
    #[test]
    fn shipped_config_is_valid() {
        let text = include_str!("../../config/edgewake.toml");
        let config = Config::parse(text).unwrap();
        assert_eq!(config.edge.idle_timeout.as_secs(), 4);
        assert!(config.edge.domains.iter().any(|d| d == "localhost"));
        assert!(config.images.contains_key("flyio/fastify-functions"));
    }

    /// The shipped file differs from the built-in defaults only in the keys its header
    /// lists (data_dir, certs_dir, idle_timeout, regions, images).
    #[test]
    fn shipped_config_differs_only_where_it_says() {
        let text = include_str!("../../config/edgewake.toml");
        let mut shipped = Config::parse(text).unwrap();
        let defaults = Config::default();
        for key in ["data_dir", "certs_dir", "idle_timeout", "regions", "images"] {
            assert!(text.contains(&format!("#   {key} ")), "{key} not listed");
        }
        shipped.data_dir = defaults.data_dir.clone();
        shipped.tls.certs_dir = defaults.tls.certs_dir.clone();
        shipped.edge.idle_timeout = defaults.edge.idle_timeout;
        shipped.regions = defaults.regions.clone();
        shipped.images = defaults.images.clone();
        assert_eq!(shipped, defaults);
    }

    /// The system config the systemd unit and the container image install is valid,
    /// with absolute paths only.
    #[test]
    fn packaged_config_is_valid() {
        let config = Config::parse(include_str!("../../packaging/edgewake.toml")).unwrap();
        assert!(config.data_dir.is_absolute() && config.tls.certs_dir.is_absolute());
    }

    /// Every unknown key and every invalid value is reported, not just the first.
    #[test]
    fn reports_every_problem() {
        let text = r#"
            colour = "blue"
            [edge]
            region = "xyz"
            idle_timout = "4s"
            domains = []
            [machines]
            driver = "vm"
            stop_signal = "SIGNOPE"
            private_ip_range = "10.0.0.0/8"
            [[regions]]
            code = "ams"
            latitude = 52.3
            longitude = 4.9
            altitude = 3
        "#;
        let errors = Config::parse(text).unwrap_err();
        let all = errors.to_string();
        for needle in [
            "`colour`",
            "`edge.idle_timout`",
            "`regions.0.altitude`",
            "`edge.region`",
            "`edge.domains`",
            "`machines.driver`",
            "`machines.stop_signal`",
            "`machines.private_ip_range`",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(errors.problems().len(), 8, "{all}");
    }

    /// Every value written as text that does not parse is named by its key, all in one
    /// report: serde would have stopped at the first.
    #[test]
    fn reports_every_bad_value() {
        let text = r#"
            [edge]
            http = "localhost"
            https = "0.0.0.0:99999"
            idle_timeout = "4"
            wake_timeout = "soon"
            trusted_proxies = ["10.0.0.0/8", "10.0.0.300", "proxy.example.com"]
            [api]
            listen = "4280"
            [tls]
            handshake_timeout = "-1s"
            [machines]
            stop_timeout = "5 parsecs"
            [sandbox]
            network = "127.20.0.0/16"
        "#;
        let errors = Config::parse(text).unwrap_err();
        let all = errors.to_string();
        for needle in [
            "`edge.http`: `localhost`",
            "`edge.https`: `0.0.0.0:99999`",
            "`edge.idle_timeout`: `4`",
            "`edge.wake_timeout`: `soon`",
            "`edge.trusted_proxies`: `10.0.0.300`",
            "`edge.trusted_proxies`: `proxy.example.com`",
            "`api.listen`: `4280`",
            "`tls.handshake_timeout`: `-1s`",
            "`machines.stop_timeout`: `5 parsecs`",
            "`sandbox.network`: `127.20.0.0/16` must be a private range",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(errors.problems().len(), 10, "{all}");
    }

    /// A connection limit no semaphore can hold is refused at load instead of panicking
    /// at start (found by fuzz/config_toml's check, on a hand-made input).
    #[test]
    fn connection_limit_fits_a_semaphore() {
        let err = Config::parse("[edge]\nmax_connections = 9223372036854775807\n").unwrap_err();
        assert!(
            err.problems()
                .iter()
                .any(|p| p.starts_with("`edge.max_connections` must be at most")),
            "{err}"
        );
    }

    /// `edge.workers` is read; past its bound it is named with the other problems.
    #[test]
    fn edge_workers_are_read_and_bounded() {
        let config = Config::parse("[edge]\nworkers = 2\n").unwrap();
        assert_eq!(config.edge.workers, 2);
        assert_eq!(
            Config::default().edge.workers,
            0,
            "the main runtime by default"
        );
        let text = "[edge]\nworkers = 1025\nmax_connections = 0\n";
        let all = Config::parse(text).unwrap_err().to_string();
        for needle in [
            "`edge.workers` must be at most 1024",
            "`edge.max_connections`",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    /// Quotas are read from `[limits]`; a stop timeout past Fly's limit and a zero quota
    /// are named.
    #[test]
    fn limits_and_stop_timeout_are_bounded() {
        let config = Config::parse("[limits]\napps = 3\nmachines_per_app = 7\n").unwrap();
        assert_eq!((config.limits.apps, config.limits.machines_per_app), (3, 7));
        let text = "[machines]\nstop_timeout = \"10000h\"\n[limits]\nmachines_per_app = 0\n";
        let all = Config::parse(text).unwrap_err().to_string();
        for needle in ["`machines.stop_timeout` must be at most", "`limits.apps`"] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    /// A duration without a unit names the key it belongs to.
    #[test]
    fn bad_duration_names_its_key() {
        let errors = Config::parse("[edge]\nidle_timeout = \"4\"\n").unwrap_err();
        let all = errors.to_string();
        assert!(all.contains("`edge.idle_timeout`: `4`"), "{all}");
    }

    /// Unknown keys inside lists and tables the file may leave out are named as written.
    #[test]
    fn unknown_keys_are_named_as_written() {
        let text = r#"
            [images."app:1"]
            command = ["app"]
            colour = "blue"
            [[sandbox.registries]]
            host = "registry.example.com"
            token = "x"
        "#;
        let all = Config::parse(text).unwrap_err().to_string();
        for needle in ["`images.app:1.colour`", "`sandbox.registries.0.token`"] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }
}
