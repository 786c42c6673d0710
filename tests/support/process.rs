//! The `edgewake` binary in a process of its own (for signals, crashes and restarts).

use super::{RUNTIME_IMAGE, TOKEN, random_loopback_range};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A loopback port that was free a moment ago (for the edgewake binary's flags).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `edgewake` binary running `serve` in its own process.
pub struct EdgewakeProcess {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub api: SocketAddr,
}

impl EdgewakeProcess {
    /// Starts `edgewake serve` with the test config written to `dir`, and waits until
    /// its API answers.
    pub async fn spawn(dir: &Path, range: &str) -> EdgewakeProcess {
        EdgewakeProcess::spawn_config(dir, &process_config(dir, range), &[]).await
    }

    /// Starts `edgewake serve --driver sandbox` with machines in `network`.
    pub async fn spawn_sandboxed(dir: &Path, network: &str) -> EdgewakeProcess {
        let config = process_config(dir, &random_loopback_range())
            + &format!("[sandbox]\nnetwork = \"{network}\"\npids_limit = 64\n");
        EdgewakeProcess::spawn_config(dir, &config, &["--driver", "sandbox"]).await
    }

    async fn spawn_config(dir: &Path, config_text: &str, extra: &[&str]) -> EdgewakeProcess {
        let config = dir.join("edgewake.toml");
        std::fs::write(&config, config_text).unwrap();
        let (http, https, api) = (free_port(), free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_edgewake"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(extra)
            .args([
                "--http",
                &format!("127.0.0.1:{http}"),
                "--api",
                &format!("127.0.0.1:{api}"),
                "--https",
                &format!("127.0.0.1:{https}"),
            ])
            .env("EDGEWAKE_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let process = EdgewakeProcess {
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            https: format!("127.0.0.1:{https}").parse().unwrap(),
            api: format!("127.0.0.1:{api}").parse().unwrap(),
        };
        process.wait_until_serving().await;
        process
    }

    async fn wait_until_serving(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let res = client
                .get(format!("http://{}/v1/apps", self.api))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edgewake did not start serving");
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edgewake did not exit");
    }
}

/// A test that fails must not leave its edgewake running: it would keep the test
/// runner's output pipe open (and CI waiting) for ever.
impl Drop for EdgewakeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn process_config(dir: &Path, range: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
[tls]
certs_dir = "{certs}"
[edge]
region = "ams"
idle_timeout = "60s"
[machines]
private_ip_range = "{range}"
stop_timeout = "2s"
[[regions]]
code = "ams"
latitude = 52.374
longitude = 4.890
[images."{RUNTIME_IMAGE}"]
command = ["{{bin_dir}}/edgewake", "functions"]
"#,
        data = dir.join("data").display(),
        certs = dir.join("certs").display(),
    )
}
