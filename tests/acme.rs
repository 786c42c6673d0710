//! ACME against a real CA (Debian's Pebble, on loopback): issuance by TLS-ALPN-01 and by
//! HTTP-01 answered by the edge itself, failures with the CA's reason and backoff,
//! renewal while old connections keep theirs, custom certificates over ACME ones,
//! on-demand issuance for apps only, and a restart that orders nothing.

mod support;

use edgewake::certificates::acme::timing::Backoff;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::pebble::{Pebble, PebbleSetup};
use support::tls::{
    connect, get, http1_over, send1, served_certificate, trusting, trusting_anything,
};
use support::{APP, RUNTIME_IMAGE, TestEdge, free_port};

const HOST: &str = "shop.example.test";

/// Short waits between failed orders, so retries are seen in seconds.
const TEST_BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(4),
};

/// An edge with `[acme]` for a Pebble whose validations reach `ports(edge)` (HTTP-01
/// port, TLS-ALPN-01 port), and an app with a machine that is not started.
async fn edge_with_pebble(
    on_demand: bool,
    validity: Option<u64>,
    ports: impl FnOnce(&TestEdge) -> (u16, u16),
) -> (TestEdge, Pebble, String) {
    let setup = PebbleSetup::new();
    let acme = setup.acme_config(on_demand);
    let edge = TestEdge::start_with_acme_backoff(
        |c| {
            c.acme = Some(acme);
            c.edge.domains.push("apps.example.test".into());
        },
        TEST_BACKOFF,
    )
    .await;
    let (http, tls) = ports(&edge);
    let pebble = setup.start(http, tls, validity).await;
    edge.create_app(APP).await;
    let machine = edge.new_machine(APP, RUNTIME_IMAGE).created().await.id;
    (edge, pebble, machine)
}

/// Both of the edge's listeners.
fn both(edge: &TestEdge) -> (u16, u16) {
    (
        edge.running.http_addr.port(),
        edge.running.https_addr.port(),
    )
}

fn certificate_path(host: &str) -> String {
    format!("/v1/apps/{APP}/certificates/{host}")
}

async fn request_acme(edge: &TestEdge, host: &str) -> Value {
    let path = format!("/v1/apps/{APP}/certificates/acme");
    let (status, body) = edge.post(&path, json!({"hostname": host})).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// The hostname's detail once `done` holds for it.
async fn wait_for(edge: &TestEdge, host: &str, done: impl Fn(&Value) -> bool) -> Value {
    let look = async || {
        let (status, detail) = edge.get(&certificate_path(host)).await;
        assert_eq!(status, 200, "{detail}");
        match done(&detail) {
            true => Ok(detail),
            false => Err(detail),
        }
    };
    support::wait::until(&format!("{host} to settle"), Duration::from_secs(30), look).await
}

async fn wait_for_issued(edge: &TestEdge, host: &str) -> Value {
    wait_for(edge, host, |d| d["status"] == "issued").await
}

/// The ACME certificate entry of a detail.
fn acme_entry(detail: &Value) -> &Value {
    detail["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "fly")
        .expect("an ACME entry")
}

/// The certificate the edge presents for `host` (whatever its issuer).
async fn presented(https: SocketAddr, host: &str) -> Vec<u8> {
    let stream = connect(https, host, trusting_anything()).await.unwrap();
    served_certificate(&stream)
}

/// GET / on `host` over TLS, trusting only `root`.
async fn https_get(https: SocketAddr, host: &str, root: &Path) -> (http::StatusCode, String) {
    let stream = connect(https, host, trusting(root, &[b"http/1.1"]))
        .await
        .expect("the certificate verifies against the root");
    let mut sender = http1_over(stream).await;
    send1(&mut sender, get(host, "/")).await
}

async fn machine_state(edge: &TestEdge, id: &str) -> Value {
    edge.machine(APP, id).await["state"].clone()
}

/// `POST …/certificates/acme` gets a certificate validated by TLS-ALPN-01 on the HTTPS
/// listener; a client trusting Pebble's root gets it for that name and reaches the app's
/// machine, woken by that request (the validation did not wake it).
#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn_01_issues_and_the_request_wakes_the_machine() {
    let closed = free_port();
    let (edge, pebble, machine) =
        edge_with_pebble(false, None, |e| (closed, e.running.https_addr.port())).await;
    let added = request_acme(&edge, HOST).await;
    assert_eq!(added["acme_requested"], true, "{added}");
    let issued = wait_for_issued(&edge, HOST).await;
    assert_eq!(
        acme_entry(&issued)["validated_by"],
        "tls-alpn-01",
        "{issued}"
    );
    assert_eq!(issued["configured"], true);
    assert_eq!(machine_state(&edge, &machine).await, "created");
    let (status, body) = https_get(edge.running.https_addr, HOST, &pebble.root().await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(machine_state(&edge, &machine).await, "started");
    edge.shutdown().await;
}

/// With the HTTPS listener out of the CA's reach, the first order fails with the CA's
/// reason, the retry after the backoff uses HTTP-01 on the HTTP listener and is issued;
/// neither validation woke the machine.
#[tokio::test(flavor = "multi_thread")]
async fn http_01_issues_when_tls_alpn_01_cannot_reach() {
    let closed = free_port();
    let (edge, pebble, machine) =
        edge_with_pebble(false, None, |e| (e.running.http_addr.port(), closed)).await;
    request_acme(&edge, HOST).await;
    let issued = wait_for_issued(&edge, HOST).await;
    assert_eq!(acme_entry(&issued)["validated_by"], "http-01", "{issued}");
    let failure = &issued["validation_errors"][0];
    assert!(
        failure["code"]
            .as_str()
            .unwrap()
            .starts_with("urn:ietf:params:acme:error:"),
        "{failure}"
    );
    assert!(!failure["message"].as_str().unwrap().is_empty());
    assert_eq!(machine_state(&edge, &machine).await, "created");
    let (status, _) = https_get(edge.running.https_addr, HOST, &pebble.root().await).await;
    assert_eq!(status, 200);
    edge.shutdown().await;
}

/// A name the CA cannot reach fails with the CA's reason, stays `failed`, and is
/// retried with waits that double; nothing is served for it but the fallback.
#[tokio::test(flavor = "multi_thread")]
async fn failed_validation_reports_the_reason_and_backs_off() {
    let (edge, pebble, _) = edge_with_pebble(false, None, both).await;
    pebble.resolve(HOST, "127.0.0.2").await; // nothing listens there
    request_acme(&edge, HOST).await;
    let failed = wait_for(&edge, HOST, |d| {
        d["validation_errors"].as_array().unwrap().len() >= 3
    })
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["configured"], false);
    let errors = failed["validation_errors"].as_array().unwrap();
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message
            .to_lowercase()
            .contains("failed to connect to 127.0.0.2"),
        "the CA's reason: {message}"
    );
    let at = |i: usize| humantime::parse_rfc3339(errors[i]["timestamp"].as_str().unwrap()).unwrap();
    let first_gap = at(1).duration_since(at(0)).unwrap();
    let second_gap = at(2).duration_since(at(1)).unwrap();
    assert!(first_gap >= TEST_BACKOFF.first, "{failed}");
    assert!(second_gap >= TEST_BACKOFF.first * 2, "{failed}");
    assert!(failed["next_attempt_at"].is_string());
    edge.shutdown().await;
}

/// A short-lived certificate is renewed before it expires: a connection opened after
/// the renewal gets the new one, a connection opened before keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn renewal_serves_new_connections_while_old_ones_keep_working() {
    let (edge, pebble, _) = edge_with_pebble(false, Some(8), both).await;
    request_acme(&edge, HOST).await;
    let issued = wait_for_issued(&edge, HOST).await;
    let expires = acme_entry(&issued)["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    let expires = humantime::parse_rfc3339(&expires).unwrap();
    let root = pebble.root().await;
    let old = connect(
        edge.running.https_addr,
        HOST,
        trusting(&root, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let first = served_certificate(&old);
    let mut old = http1_over(old).await;
    assert_eq!(send1(&mut old, get(HOST, "/")).await.0, 200);
    let renewed = async || presented(edge.running.https_addr, HOST).await != first;
    support::wait::until_true("a renewed certificate", Duration::from_secs(20), renewed).await;
    assert!(
        std::time::SystemTime::now() < expires,
        "renewed only after expiry"
    );
    let (status, _) = https_get(edge.running.https_addr, HOST, &root).await;
    assert_eq!(status, 200);
    assert_eq!(send1(&mut old, get(HOST, "/")).await.0, 200);
    edge.shutdown().await;
}

/// A custom certificate for a hostname with an ACME one is served instead of it;
/// deleting the custom one serves the ACME one again; deleting the hostname takes it
/// out of routing and of TLS.
#[tokio::test(flavor = "multi_thread")]
async fn custom_certificate_wins_over_acme_and_deletes_fall_back() {
    let (edge, _pebble, _) = edge_with_pebble(false, None, both).await;
    request_acme(&edge, HOST).await;
    wait_for_issued(&edge, HOST).await;
    let https = edge.running.https_addr;
    let acme = presented(https, HOST).await;
    let custom = edgewake::tls::dev_ca::self_signed(&[HOST.to_string()]).unwrap();
    let body = json!({"hostname": HOST, "fullchain": custom.cert, "private_key": custom.key});
    let path = format!("/v1/apps/{APP}/certificates/custom");
    let (status, detail) = edge.post(&path, body).await;
    assert_eq!(status, 201, "{detail}");
    assert_eq!(
        detail["certificates"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
    let served = presented(https, HOST).await;
    let custom_der = rustls_pki_types::pem::PemObject::from_pem_slice(custom.cert.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    assert_eq!(served, custom_der);
    let (status, detail) = edge
        .delete(&format!("{}/custom", certificate_path(HOST)))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(presented(https, HOST).await, acme);
    let (status, _) = edge.delete(&certificate_path(HOST)).await;
    assert_eq!(status, 204);
    assert_ne!(presented(https, HOST).await, acme);
    let res = edge
        .client
        .get(format!("http://{}/", edge.running.http_addr))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(edge.get(&certificate_path(HOST)).await.0, 404);
    edge.shutdown().await;
}

/// On demand, a ClientHello for `<app>.<domain>` without a certificate waits for one
/// and gets it; a name of no app never starts an order and gets the fallback at once.
#[tokio::test(flavor = "multi_thread")]
async fn on_demand_orders_for_apps_only() {
    let (edge, pebble, _) = edge_with_pebble(true, None, both).await;
    let https = edge.running.https_addr;
    let acme = edge.running.certificates.acme().unwrap().clone();
    let stranger = "stranger.example.test";
    connect(https, stranger, trusting_anything()).await.unwrap();
    assert_eq!(acme.orders_placed(), 0);
    let app_host = format!("{APP}.apps.example.test");
    let (status, _) = https_get(https, &app_host, &pebble.root().await).await;
    assert_eq!(status, 200);
    assert_eq!(acme.orders_placed(), 1);
    let (_, listed) = edge.get(&format!("/v1/apps/{APP}/certificates")).await;
    assert_eq!(listed["total_count"], 1, "{listed}");
    assert_eq!(listed["certificates"][0]["hostname"], app_host.as_str());
    connect(https, stranger, trusting_anything()).await.unwrap();
    assert_eq!(acme.orders_placed(), 1);
    edge.shutdown().await;
}

/// After a restart the certificate and the account are loaded from the data dir: the
/// same certificate is served at once and no order is placed; keys stay private.
#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_certificates_and_account_without_ordering() {
    use std::os::unix::fs::PermissionsExt;
    let (edge, _pebble, _) = edge_with_pebble(false, None, both).await;
    request_acme(&edge, HOST).await;
    wait_for_issued(&edge, HOST).await;
    let before = presented(edge.running.https_addr, HOST).await;
    let data = edge.config.data_dir.clone();
    let account = std::fs::read(data.join("acme/account.json")).unwrap();
    let edge = edge.restart().await;
    let (status, detail) = edge.get(&certificate_path(HOST)).await;
    assert_eq!(
        (status.as_u16(), &detail["status"]),
        (200, &json!("issued"))
    );
    assert_eq!(presented(edge.running.https_addr, HOST).await, before);
    assert_eq!(edge.running.certificates.acme().unwrap().orders_placed(), 0);
    assert_eq!(
        std::fs::read(data.join("acme/account.json")).unwrap(),
        account
    );
    for file in [
        "acme/account.json",
        "certificates/shop.example.test/acme.pem",
    ] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    edge.shutdown().await;
}
