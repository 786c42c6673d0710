//! A real ACME CA for tests: Debian's Pebble on loopback with `PEBBLE_VA_NOSLEEP=1`, its
//! validation ports pointed at an edge's listeners, and pebble-challtestsrv as its DNS
//! (every name is 127.0.0.1 unless a test says otherwise). Pebble's own TLS certificate
//! is made here (the package ships none), by a CA the edge is told to trust.
//!
//! The edge needs the directory URL when it starts and Pebble needs the edge's ports when
//! it starts: `PebbleSetup` reserves Pebble's ports first, the edge starts, then
//! `PebbleSetup::start` runs Pebble.

use super::free_port;
use super::tls::{connect, http1_over, send1, trusting};
use edgewake::config::{AcmeConfig, AcmeDirectory};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Pebble's ports and TLS certificate, before it runs.
pub struct PebbleSetup {
    dir: tempfile::TempDir,
    listen: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    dns_management: SocketAddr,
    /// The CA of Pebble's own TLS certificate (the edge's `acme.directory_ca`).
    pub tls_ca: PathBuf,
}

/// Pebble and its DNS, running; both are killed when this drops.
pub struct Pebble {
    setup: PebbleSetup,
    children: Vec<Child>,
}

impl PebbleSetup {
    pub fn new() -> PebbleSetup {
        let dir = tempfile::tempdir().unwrap();
        let tls_ca = edgewake::tls::dev_ca::generate(dir.path(), &["127.0.0.1".into()]).unwrap();
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        PebbleSetup {
            listen: addr(),
            management: addr(),
            dns: addr(),
            dns_management: addr(),
            tls_ca,
            dir,
        }
    }

    /// The edge's `[acme]` section for this Pebble.
    pub fn acme_config(&self, on_demand: bool) -> AcmeConfig {
        AcmeConfig {
            directory: AcmeDirectory::Url(format!("https://{}/dir", self.listen)),
            email: Some("ops@example.test".into()),
            directory_ca: Some(self.tls_ca.clone()),
            on_demand,
            external_account: None,
        }
    }

    /// Runs Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
    /// 127.0.0.1, issuing certificates valid `validity` seconds (Pebble's default
    /// otherwise); returns once its directory answers.
    pub async fn start(self, http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let config = self.dir.path().join("pebble.json");
        let mut pebble = serde_json::json!({
            "listenAddress": self.listen.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": self.dir.path().join("127.0.0.1.crt"),
            "privateKey": self.dir.path().join("127.0.0.1.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(seconds) = validity {
            pebble["certificateValidityPeriod"] = seconds.into();
        }
        std::fs::write(&config, serde_json::json!({"pebble": pebble}).to_string()).unwrap();
        let dns = spawn(Command::new("pebble-challtestsrv").args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &self.dns.to_string(),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &self.dns_management.to_string(),
        ]));
        let ca = spawn(
            Command::new("pebble")
                .args(["-config", config.to_str().unwrap()])
                .args(["-dnsserver", &self.dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", "0"),
        );
        let pebble = Pebble {
            setup: self,
            children: vec![dns, ca],
        };
        pebble.wait_until_serving().await;
        pebble
    }
}

fn spawn(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble is installed (scripts/install-acme-deps.sh)")
}

impl Pebble {
    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let directory = self.get(self.setup.listen, "/dir").await;
            let dns = reqwest::get(format!("http://{}/", self.setup.dns_management)).await;
            if directory.is_some_and(|(status, _)| status == 200) && dns.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pebble did not start"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A GET over Pebble's TLS; `None` while it does not answer.
    async fn get(&self, addr: SocketAddr, path: &str) -> Option<(http::StatusCode, String)> {
        let config = trusting(&self.setup.tls_ca, &[b"http/1.1"]);
        let stream = connect(addr, "127.0.0.1", config).await.ok()?;
        let mut sender = http1_over(stream).await;
        Some(send1(&mut sender, super::tls::get("127.0.0.1", path)).await)
    }

    /// Pebble's root (PEM, from `/roots/0` on its management port), written to a file a
    /// client can trust.
    pub async fn root(&self) -> PathBuf {
        let (status, pem) = self.get(self.setup.management, "/roots/0").await.unwrap();
        assert_eq!(status, 200, "{pem}");
        let path = self.setup.dir.path().join("pebble-root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// Makes `host` resolve to `ip` for Pebble's validations.
    pub async fn resolve(&self, host: &str, ip: &str) {
        let client = reqwest::Client::new();
        let res = client
            .post(format!("http://{}/add-a", self.setup.dns_management))
            .body(serde_json::json!({"host": host, "addresses": [ip]}).to_string())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    pub fn dir(&self) -> &Path {
        self.setup.dir.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
