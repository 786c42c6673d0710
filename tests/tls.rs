//! HTTPS on the edge: certificates by SNI, wakes over TLS, HTTP/2, handshake timeouts,
//! `force_https`, and certificate reloads on SIGHUP.

mod support;

use edgewake::tls::dev_ca;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::tls::*;
use support::*;
use tokio::io::AsyncReadExt;

const HOST: &str = "user-functions.localhost";

/// Writes the development CA and certificates for `hosts` into `dir`; returns the CA.
fn certs_for(dir: &Path, hosts: &[&str]) -> PathBuf {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    dev_ca::generate(dir, &hosts).unwrap()
}

/// An HTTPS request (rustls trusting the generated CA) to a stopped machine wakes it and
/// returns its answer; the machine saw `X-Forwarded-Proto: https`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_request_wakes_the_machine() {
    let edge = TestEdge::start_with(|c| {
        certs_for(&c.tls.certs_dir, &[HOST]);
    })
    .await;
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;

    let stream = connect(edge.running.https_addr, HOST, trusting(&ca, &[b"http/1.1"]))
        .await
        .unwrap();
    let mut sender = http1_over(stream).await;
    let (status, body) = send1(&mut sender, get(HOST, "/secure")).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["machine_id"], id.as_str());
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    assert_eq!(body["headers"]["x-forwarded-ssl"], "on");
    assert_eq!(body["headers"]["x-forwarded-port"], "443");
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "start"), 1);
    edge.shutdown().await;
}

/// With two edge workers (threads `edge-worker-0` and `-1`), a request over HTTPS wakes
/// the machine, and many clients at once, over HTTP and HTTPS, on new connections
/// and on kept-alive ones, all get the machine's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_serve_many_connections_over_http_and_https() {
    let edge = TestEdge::start_with(|c| {
        certs_for(&c.tls.certs_dir, &[HOST]);
        c.edge.workers = 2;
    })
    .await;
    // A thread takes its name as it begins to run, which may be just after the start.
    wait::until(
        "both workers' threads",
        Duration::from_secs(5),
        async || {
            let threads = thread_names();
            let named = |name| threads.iter().any(|t| t == name);
            match named("edge-worker-0") && named("edge-worker-1") {
                true => Ok(()),
                false => Err(format!("{threads:?}")),
            }
        },
    )
    .await;
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    let id = edge.app_with_machine(RUNTIME_IMAGE).created().await.id;
    let https = || connect(edge.running.https_addr, HOST, trusting(&ca, &[b"http/1.1"]));
    let mut sender = http1_over(https().await.unwrap()).await;
    assert_eq!(
        send1(&mut sender, get(HOST, "/wake")).await.0,
        StatusCode::OK
    );
    let new_connections = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let clients = (0..16).map(|i| {
        let (https, kept_alive) = (https(), edge.request_to(APP, "/kept"));
        let fresh = new_connections
            .get(format!("http://{}/new/{i}", edge.running.http_addr))
            .header("host", HOST);
        async move {
            let mut sender = http1_over(https.await.unwrap()).await;
            for n in 0..5 {
                let path = format!("/https/{i}/{n}");
                let (status, body) = send1(&mut sender, get(HOST, &path)).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let fresh = fresh.try_clone().unwrap().send().await.unwrap();
                assert_eq!(fresh.status(), StatusCode::OK);
                let kept = kept_alive.try_clone().unwrap().send().await.unwrap();
                assert_eq!(kept.status(), StatusCode::OK);
            }
        }
    });
    futures_util::future::join_all(clients).await;
    let machine = edge.machine(APP, &id).await;
    assert_eq!(count_events(&machine, "start"), 1);
    edge.shutdown().await;
}

/// The names of this process's threads (the test runs edgewake in its own process).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// SNI picks the exact certificate before the wildcard, the wildcard serves a
/// subdomain, and an unknown name gets the default certificate rather than an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let edge = TestEdge::start_with(|c| {
        certs_for(
            &c.tls.certs_dir,
            &["*.example.com", "api.example.com", "*.localhost"],
        );
    })
    .await;
    let dir = edge.config.tls.certs_dir.clone();
    let served = |name: &'static str| {
        let addr = edge.running.https_addr;
        async move { served_certificate(&connect(addr, name, trusting_anything()).await.unwrap()) }
    };
    assert_eq!(
        served("api.example.com").await,
        certificate_file(&dir.join("api.example.com.crt"))
    );
    assert_eq!(
        served("shop.example.com").await,
        certificate_file(&dir.join("_.example.com.crt"))
    );
    assert_eq!(
        served("app.localhost").await,
        certificate_file(&dir.join("_.localhost.crt"))
    );
    // The default is the first certificate file by name.
    assert_eq!(
        served("unknown.example.org").await,
        certificate_file(&dir.join("_.example.com.crt"))
    );
    edge.shutdown().await;
}

/// Without any certificate files, a self-signed certificate for the app domains is
/// made at start and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_fallback_without_certificates() {
    let edge = TestEdge::start().await;
    let addr = edge.running.https_addr;
    assert!(served_self_signed_for(addr, "localhost").await);
    // webpki refuses to match a wildcard over one label (`*.localhost`) however it is
    // signed, so an app's name is checked to get that same certificate.
    assert_eq!(
        served_for(addr, HOST).await,
        served_for(addr, "localhost").await
    );
    let stream = connect(addr, HOST, trusting_anything()).await.unwrap();
    let mut sender = http1_over(stream).await;
    let (status, _) = send1(&mut sender, get(HOST, "/")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no app yet: the edge answers over TLS"
    );
    edge.shutdown().await;
}

/// Beside certificate files, the app domains' names no file covers still get the
/// self-signed certificate, which covers them, rather than a file's certificate for
/// another name; names outside the app domains get the default file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_app_names_get_the_self_signed_certificate() {
    let edge = TestEdge::start_with(|c| {
        certs_for(&c.tls.certs_dir, &["api.example.com"]);
        c.edge.domains = vec!["localhost".into(), "example.test".into()];
    })
    .await;
    let addr = edge.running.https_addr;
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    let trusted = connect(addr, "api.example.com", trusting(&ca, &[])).await;
    assert!(trusted.is_ok(), "a file's name gets the file: {trusted:?}");
    for name in ["localhost", "example.test", "shop.example.test"] {
        assert!(
            served_self_signed_for(addr, name).await,
            "{name} gets a self-signed certificate for itself"
        );
    }
    let fallback = served_for(addr, "localhost").await;
    assert_eq!(served_for(addr, HOST).await, fallback, "as does {HOST}");
    let file = certificate_file(&edge.config.tls.certs_dir.join("api.example.com.crt"));
    assert_eq!(
        served_for(addr, "unknown.example.org").await,
        file,
        "other names get the default"
    );
    edge.shutdown().await;
}

/// 100 concurrent HTTP/2 streams on one TLS connection all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_http2_streams_on_one_connection() {
    hundred_http2_streams(0).await;
}

/// The same on an edge worker (hyper's HTTP/2 server and its streams run there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_http2_streams_on_a_worker() {
    hundred_http2_streams(2).await;
}

async fn hundred_http2_streams(workers: usize) {
    let edge = TestEdge::start_with(|c| {
        certs_for(&c.tls.certs_dir, &[HOST]);
        c.edge.workers = workers;
    })
    .await;
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let stream = connect(edge.running.https_addr, HOST, trusting(&ca, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let sender = http2_over(stream).await;
    let streams = (0..100).map(|i| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            sender
                .send_request(get(HOST, &format!("/stream/{i}?sleep=20")))
                .await
                .unwrap()
                .status()
        })
    });
    for stream in streams.collect::<Vec<_>>() {
        assert_eq!(stream.await.unwrap(), StatusCode::OK);
    }
    edge.shutdown().await;
}

/// A client that never finishes its handshake is cut off after the timeout, and other
/// clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshake_is_closed_after_the_timeout() {
    let edge = TestEdge::start_with(|c| c.tls.handshake_timeout = Duration::from_millis(300)).await;
    let mut stalled = tokio::net::TcpStream::connect(edge.running.https_addr)
        .await
        .unwrap();

    let stream = connect(edge.running.https_addr, HOST, trusting_anything())
        .await
        .unwrap();
    let (status, _) = send1(&mut http1_over(stream).await, get(HOST, "/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client is served");

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled connection was closed: {read:?}"
    );
    edge.shutdown().await;
}

/// `force_https` answers 301 to the same host and path on https, without waking the
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_https_redirects() {
    let edge = TestEdge::start().await;
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["ports"][1]["force_https"] = true.into())
        .created()
        .await
        .id;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .get(format!("http://{}/some/path?q=1", edge.running.http_addr))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        res.headers()["location"],
        format!("https://{HOST}/some/path?q=1")
    );
    assert_eq!(edge.machine(APP, &id).await["state"], "created");
    edge.shutdown().await;
}

/// SIGHUP with a new certificate changes what new connections get, while a connection
/// opened before keeps working; a broken file on a later reload keeps the certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_for(&certs, &["*.localhost"]);
    let first = certificate_file(&certs.join("_.localhost.crt"));
    let edge = EdgewakeProcess::spawn(dir.path(), &random_loopback_range()).await;
    let old = connect(edge.https, HOST, trusting_anything())
        .await
        .unwrap();
    assert_eq!(served_certificate(&old), first);
    let mut old = http1_over(old).await;

    certs_for(&certs, &["*.localhost"]); // a new key and certificate, same names
    let second = certificate_file(&certs.join("_.localhost.crt"));
    assert_ne!(first, second);
    edge.signal("HUP");
    let fresh = served_until(edge.https, &second).await;
    assert_eq!(fresh, second, "new connections get the new certificate");
    assert_eq!(
        send1(&mut old, get(HOST, "/")).await.0,
        StatusCode::NOT_FOUND,
        "the old connection still works"
    );

    std::fs::write(certs.join("broken.crt"), "not a certificate").unwrap();
    std::fs::write(certs.join("broken.key"), "not a key").unwrap();
    edge.signal("HUP");
    edge.wait_for_log("certificate reload failed").await;
    let now = served_certificate(
        &connect(edge.https, HOST, trusting_anything())
            .await
            .unwrap(),
    );
    assert_eq!(now, second, "a bad file keeps the certificates in use");
    edge.signal("TERM");
    assert_eq!(edge.exit_code().await, Some(0));
}

/// Connects until the served certificate is `expected` (a reload is asynchronous), for
/// at most 5 s; returns it.
async fn served_until(addr: std::net::SocketAddr, expected: &[u8]) -> Vec<u8> {
    let what = "new connections to get the reloaded certificate";
    wait::until(what, Duration::from_secs(5), async || {
        let seen = served_certificate(&connect(addr, HOST, trusting_anything()).await.unwrap());
        if seen == expected {
            Ok(seen)
        } else {
            Err("the certificate from before")
        }
    })
    .await
}

/// A port with only the `tls` handler terminates TLS and passes the bytes to the
/// machine as TCP: the machine sees the client's own request, without edge headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_port_passes_bytes_through() {
    let edge = TestEdge::start_with(|c| {
        certs_for(&c.tls.certs_dir, &[HOST]);
    })
    .await;
    let ca = edge.config.tls.certs_dir.join("edgewake-ca.crt");
    let id = edge
        .app_with_machine(RUNTIME_IMAGE)
        .config(|c| c["services"][0]["ports"][0]["handlers"] = serde_json::json!(["tls"]))
        .created()
        .await
        .id;

    let stream = connect(edge.running.https_addr, HOST, trusting(&ca, &[b"http/1.1"]))
        .await
        .unwrap();
    let (status, body) = send1(&mut http1_over(stream).await, get(HOST, "/raw")).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["machine_id"],
        id.as_str(),
        "the stopped machine was woken"
    );
    assert!(
        body["headers"].get("x-forwarded-proto").is_none(),
        "no proxy headers: {body}"
    );
    edge.shutdown().await;
}
