//! A config read again while serving (SIGHUP): the settings read per request, per
//! connection or per round (timeouts, limits, trusted proxies, regions, geo databases,
//! stop signal) are swapped in whole; what was bound or opened at start (listeners,
//! the edge's workers, the data dir, the driver and its catalog, the certs dir,
//! `[cluster]` and a cluster node's region) is kept and named. Every fallible step
//! runs before anything is swapped, so a bad file or certificate changes nothing.

use super::{Live, open_geo};
use crate::config::Config;
use std::fmt::Debug;

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Live keys whose value changed, as `key: old → new`.
    pub changed: Vec<String>,
    /// Keys that changed in the file but need a restart; the running values stay.
    pub kept: Vec<&'static str>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    #[error("certificate reload failed (the certificates in use stay): {0}")]
    Certificates(#[from] crate::tls::certs::CertError),
}

pub(super) fn reload(live: &Live, mut file: Config) -> Result<Reloaded, ReloadError> {
    super::live::fit_descriptors(&mut file, crate::listener::fd_limit());
    let mut current = live
        .config
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (config, kept) = keep_fixed(&current, file);
    let geo = open_geo(&config)?;
    live.tls.reload()?;
    live.apply(&config, geo);
    let changed = changed_live(&current, &config);
    *current = config;
    Ok(Reloaded { changed, kept })
}

/// The file's config with every setting that cannot change while serving put back to
/// the running value, and the keys that were so kept.
fn keep_fixed(running: &Config, mut file: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    macro_rules! fixed {
        ($($key:literal => $($field:ident).+;)*) => {$(
            if file.$($field).+ != running.$($field).+ {
                kept.push($key);
                file.$($field).+ = running.$($field).+.clone();
            }
        )*};
    }
    fixed! {
        "data_dir" => data_dir;
        "edge.http" => edge.http;
        "edge.https" => edge.https;
        "edge.http_service_port" => edge.http_service_port;
        "edge.https_service_port" => edge.https_service_port;
        "edge.http_proxy_protocol" => edge.http_proxy_protocol;
        "edge.https_proxy_protocol" => edge.https_proxy_protocol;
        "edge.max_upstream_connections" => edge.max_upstream_connections;
        "edge.max_machine_connections" => edge.max_machine_connections;
        "edge.workers" => edge.workers;
        "api.listen" => api.listen;
        "api.max_connections" => api.max_connections;
        "api.header_read_timeout" => api.header_read_timeout;
        "api.idle_timeout" => api.idle_timeout;
        "tls.certs_dir" => tls.certs_dir;
        "machines.driver" => machines.driver;
        "machines.private_ip_range" => machines.private_ip_range;
        "sandbox" => sandbox;
        "images" => images;
        "acme" => acme;
        "cluster" => cluster;
    }
    // A node's region is what it told the cluster when it joined.
    if running.cluster.is_some() && file.edge.region != running.edge.region {
        kept.push("edge.region");
        file.edge.region = running.edge.region.clone();
    }
    (file, kept)
}

/// The live keys whose values differ between two configs, as `key: old → new`.
fn changed_live(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut note = |key: &str, a: &dyn Debug, b: &dyn Debug| {
        let (a, b) = (format!("{a:?}"), format!("{b:?}"));
        if a != b {
            changed.push(format!("{key}: {a} → {b}"));
        }
    };
    macro_rules! live {
        ($($key:literal => $($field:ident).+;)*) => {$(
            note($key, &old.$($field).+, &new.$($field).+);
        )*};
    }
    live! {
        "edge.region" => edge.region;
        "edge.domains" => edge.domains;
        "edge.idle_timeout" => edge.idle_timeout;
        "edge.wake_timeout" => edge.wake_timeout;
        "edge.probe_interval" => edge.probe_interval;
        "edge.reap_interval" => edge.reap_interval;
        "edge.drain_timeout" => edge.drain_timeout;
        "edge.max_connections" => edge.max_connections;
        "edge.header_read_timeout" => edge.header_read_timeout;
        "edge.keepalive_timeout" => edge.keepalive_timeout;
        "edge.max_header_count" => edge.max_header_count;
        "edge.max_header_bytes" => edge.max_header_bytes;
        "edge.client_body_timeout" => edge.client_body_timeout;
        "edge.client_send_timeout" => edge.client_send_timeout;
        "edge.client_min_rate" => edge.client_min_rate;
        "edge.machine_read_timeout" => edge.machine_read_timeout;
        "edge.machine_send_timeout" => edge.machine_send_timeout;
        "edge.h2_keepalive_interval" => edge.h2_keepalive_interval;
        "edge.h2_keepalive_timeout" => edge.h2_keepalive_timeout;
        "edge.trusted_proxies" => edge.trusted_proxies;
        "edge.queue_timeout" => edge.queue_timeout;
        "edge.max_queued" => edge.max_queued;
        "geo.ipv4_db" => geo.ipv4_db;
        "geo.ipv6_db" => geo.ipv6_db;
        "tls.handshake_timeout" => tls.handshake_timeout;
        "machines.stop_signal" => machines.stop_signal;
        "machines.stop_timeout" => machines.stop_timeout;
    }
    if old.log_level != new.log_level {
        changed.push(format!("log_level: {} → {}", old.log_level, new.log_level));
    }
    if format!("{:?}", old.regions) != format!("{:?}", new.regions) {
        changed.push(format!("regions: {} listed", new.regions.len()));
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Listeners, the data dir, the edge's workers and the catalog are kept and named;
    /// timeouts are taken.
    #[test]
    fn fixed_keys_are_kept_and_named() {
        let running = Config::default();
        let mut file = Config::default();
        file.edge.http = "127.0.0.1:8080".parse().unwrap();
        file.data_dir = "/elsewhere".into();
        file.images.clear();
        file.edge.idle_timeout = Duration::from_secs(1);
        file.edge.workers = 2;
        let (config, kept) = keep_fixed(&running, file);
        assert_eq!(kept, ["data_dir", "edge.http", "edge.workers", "images"]);
        assert_eq!(
            config.edge.workers, running.edge.workers,
            "workers need a restart"
        );
        assert_eq!(config.edge.http, running.edge.http);
        assert_eq!(config.data_dir, running.data_dir);
        assert_eq!(config.images, running.images);
        assert_eq!(config.edge.idle_timeout, Duration::from_secs(1));
        assert_eq!(
            changed_live(&running, &config),
            ["edge.idle_timeout: 300s → 1s"]
        );
    }

    /// What sizes the connection budget, the pools and the API's listener is fixed at
    /// start; the client and machine timeouts are live.
    #[test]
    fn connection_limits_are_fixed_and_timeouts_live() {
        let running = Config::default();
        let mut file = Config::default();
        file.edge.max_upstream_connections = 1;
        file.api.max_connections = 1;
        file.edge.client_body_timeout = Duration::from_secs(1);
        let (config, kept) = keep_fixed(&running, file);
        assert_eq!(
            kept,
            ["edge.max_upstream_connections", "api.max_connections"]
        );
        let changed = changed_live(&running, &config);
        assert_eq!(changed.len(), 1);
        assert!(
            changed[0].starts_with("edge.client_body_timeout: "),
            "{changed:?}"
        );
    }
}
