//! Custom domains without ACME: a hostname imported with the operator's certificate
//! routes to its app over HTTP and HTTPS, belongs to one app only, bad certificates and
//! names are refused with the reason, challenge paths never wake a machine, a deleted
//! app takes its hostnames along, and the `edgewake certs` commands do all of it.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::tls::{connect, get, http1_over, send1, trusting};
use support::{APP, RUNTIME_IMAGE, TOKEN, TestEdge, assert_error};

const HOST: &str = "shop.example.test";

/// A development CA in `dir` and a certificate it signs for `host`: (chain, key, CA).
fn signed(dir: &std::path::Path, host: &str) -> (String, String, std::path::PathBuf) {
    let ca = edgewake::tls::dev_ca::generate(dir, &[host.to_string()]).unwrap();
    let stem = edgewake::tls::dev_ca::stem_for_host(host);
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).unwrap();
    (read("crt"), read("key"), ca)
}

async fn import(edge: &TestEdge, app: &str, host: &str, chain: &str, key: &str) -> (u16, Value) {
    let path = format!("/v1/apps/{app}/certificates/custom");
    let body = json!({"hostname": host, "fullchain": chain, "private_key": key});
    let (status, body) = edge.post(&path, body).await;
    (status.as_u16(), body)
}

/// GET / with `Host: host` on the plain-HTTP listener.
async fn http_status(edge: &TestEdge, host: &str, path: &str) -> u16 {
    let url = format!("http://{}{path}", edge.running.http_addr);
    let res = edge.client.get(url).header("host", host).send().await;
    res.unwrap().status().as_u16()
}

/// An imported certificate is served for its hostname, which routes to the app over
/// HTTP and HTTPS; the API shows it as Fly does.
#[tokio::test]
async fn custom_hostname_routes_and_serves_its_certificate() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    edge.new_machine(APP, RUNTIME_IMAGE).started().await;
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, ca) = signed(dir.path(), HOST);
    let (status, detail) = import(&edge, APP, HOST, &chain, &key).await;
    assert_eq!(status, 201, "{detail}");
    assert_eq!(detail["status"], "issued");
    assert_eq!(detail["configured"], true);
    assert_eq!(detail["acme_requested"], false);
    assert_eq!(detail["certificates"][0]["source"], "custom");
    assert_eq!(http_status(&edge, HOST, "/").await, 200);
    let stream = connect(edge.running.https_addr, HOST, trusting(&ca, &[b"http/1.1"]))
        .await
        .expect("the imported certificate is served");
    let mut sender = http1_over(stream).await;
    assert_eq!(send1(&mut sender, get(HOST, "/")).await.0, 200);
    let (_, listed) = edge.get(&format!("/v1/apps/{APP}/certificates")).await;
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["certificates"][0]["has_custom_certificate"], true);
    edge.shutdown().await;
}

/// A hostname belongs to one app; certificates that are for other names, carry another
/// key or have expired are refused with the reason; ACME without `[acme]` is refused;
/// the edge's own domains and non-names are refused; an unknown app is 404.
#[tokio::test]
async fn refusals_say_why() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    edge.create_app("other").await;
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = signed(dir.path(), HOST);
    assert_eq!(import(&edge, APP, HOST, &chain, &key).await.0, 201);
    let (status, body) = import(&edge, "other", HOST, &chain, &key).await;
    assert_error(
        status.try_into().unwrap(),
        &body,
        reqwest::StatusCode::CONFLICT,
    );
    assert!(body["error"].as_str().unwrap().contains(APP), "{body}");
    let (status, body) = import(&edge, APP, "www.example.test", &chain, &key).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("does not name"),
        "{body}"
    );
    let (_, other_key, _) = signed(&dir.path().join("b"), "b.example.test");
    let (status, body) = import(&edge, APP, HOST, &chain, &other_key).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("does not belong"),
        "{body}"
    );
    let acme = format!("/v1/apps/{APP}/certificates/acme");
    let (status, body) = edge
        .post(&acme, json!({"hostname": "new.example.test"}))
        .await;
    assert_error(status, &body, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("[acme]"), "{body}");
    let (status, body) = edge.post(&acme, json!({"hostname": "x.localhost"})).await;
    assert_error(status, &body, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = edge.post(&acme, json!({"hostname": "not a host"})).await;
    assert_error(status, &body, reqwest::StatusCode::BAD_REQUEST);
    let (status, body) = edge
        .post("/v1/apps/nope/certificates/acme", json!({"hostname": HOST}))
        .await;
    assert_error(status, &body, reqwest::StatusCode::NOT_FOUND);
    let (status, body) = edge
        .get("/v1/apps/other/certificates/shop.example.test")
        .await;
    assert_error(status, &body, reqwest::StatusCode::NOT_FOUND);
    edge.shutdown().await;
}

/// An expired certificate is refused.
#[tokio::test]
async fn expired_certificate_is_refused() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (status, body) = import(&edge, APP, HOST, &cert.pem(), &key.serialize_pem()).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    edge.shutdown().await;
}

/// `/.well-known/acme-challenge/` on the HTTP listener is the edge's to answer: it
/// never reaches or wakes a machine, for any host.
#[tokio::test]
async fn challenge_paths_never_wake_a_machine() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let machine = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    for host in [format!("{APP}.localhost"), HOST.to_string()] {
        let status = http_status(&edge, &host, "/.well-known/acme-challenge/some-token").await;
        assert_eq!(status, 404, "{host}");
    }
    assert_eq!(edge.machine(APP, &machine).await["state"], "created");
    edge.shutdown().await;
}

/// Deleting an app takes its hostnames, their routes and their kept certificates.
#[tokio::test]
async fn deleted_app_takes_its_hostnames() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = signed(dir.path(), HOST);
    assert_eq!(import(&edge, APP, HOST, &chain, &key).await.0, 201);
    let kept = edge.config.data_dir.join("certificates").join(HOST);
    assert!(kept.join("custom.pem").exists());
    assert_eq!(edge.delete(&format!("/v1/apps/{APP}")).await.0, 202);
    assert!(!kept.exists());
    edge.create_app("other").await;
    assert_eq!(import(&edge, "other", HOST, &chain, &key).await.0, 201);
    edge.shutdown().await;
}

fn cli(edge: &TestEdge, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgewake"))
        .args(args)
        .args(["--api-url", &edge.api_url(""), "--token", TOKEN])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `edgewake certs import|list|show|check|remove HOST -a APP` do what the API does and
/// say so; `certs add` without ACME fails with the API's reason.
#[tokio::test(flavor = "multi_thread")]
async fn certs_commands() {
    let edge = TestEdge::start().await;
    edge.create_app(APP).await;
    let dir = tempfile::tempdir().unwrap();
    signed(dir.path(), HOST);
    let file = |ext: &str| {
        dir.path()
            .join(format!("{HOST}.{ext}"))
            .display()
            .to_string()
    };
    let (ok, out) = cli(
        &edge,
        &[
            "certs",
            "import",
            HOST,
            "-a",
            APP,
            "--fullchain",
            &file("crt"),
            "--private-key",
            &file("key"),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("Imported a certificate for shop.example.test"),
        "{out}"
    );
    let (ok, out) = cli(&edge, &["certs", "list", "-a", APP]);
    assert!(
        ok && out.contains(HOST) && out.contains("issued") && out.contains("custom"),
        "{out}"
    );
    let (ok, out) = cli(&edge, &["certs", "show", HOST, "-a", APP]);
    assert!(ok && out.contains("edgewake development CA"), "{out}");
    let (ok, out) = cli(&edge, &["certs", "check", HOST, "-a", APP]);
    assert!(ok && out.contains("Resolves"), "{out}");
    let (ok, out) = cli(&edge, &["certs", "add", "new.example.test", "-a", APP]);
    assert!(!ok && out.contains("[acme]"), "{out}");
    let (ok, out) = cli(&edge, &["certs", "remove", HOST, "-a", APP]);
    assert!(ok && out.contains("Removed shop.example.test"), "{out}");
    let (ok, out) = cli(&edge, &["certs", "show", HOST, "-a", APP]);
    assert!(!ok && out.contains("not found"), "{out}");
    edge.shutdown().await;
}
