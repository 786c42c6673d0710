//! An edgewake's machines are its own: a second edgewake cannot take the same address
//! range, an address something already listens on is not handed out, and whatever
//! else listens on a machine's address never answers for the machine.

mod support;

use edgewake::server::{self, Options};
use reqwest::StatusCode;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use support::*;

/// A second edgewake configured with a range a running one holds refuses to start,
/// saying so; once the first has stopped, it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_edgewake_cannot_share_a_range() {
    let first = TestEdge::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.machines.private_ip_range = first.config.machines.private_ip_range;
    let options = || Options {
        api_token: Some(TOKEN.into()),
        bin_dir: Some(bin_dir()),
        ..Options::default()
    };
    let error = match server::start(config.clone(), options()).await {
        Ok(_) => panic!("two edgewakes hold the same range"),
        Err(e) => e.to_string(),
    };
    let range = first.config.machines.private_ip_range.to_string();
    assert!(error.contains(&range), "{error}");
    assert!(error.contains("another edgewake"), "{error}");
    first.shutdown().await;
    let second = server::start(config, options())
        .await
        .expect("the range is free");
    second.shutdown();
    second.stopped().await;
}

/// A socket already listening on the address a new machine would get (another
/// edgewake's machine, say) makes the range skip that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_in_use_are_skipped() {
    let edge = TestEdge::start().await;
    let first = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let first_ip: Ipv4Addr = first.json["private_ip"].as_str().unwrap().parse().unwrap();
    let next = Ipv4Addr::from(u32::from(first_ip) + 1);
    let _squatter = TcpListener::bind((next, 0)).unwrap();
    let second = edge.new_machine(APP, RUNTIME_IMAGE).created().await;
    let second_ip: Ipv4Addr = second.json["private_ip"].as_str().unwrap().parse().unwrap();
    assert_ne!(second_ip, next, "an address in use was handed out");
    assert!(edge.config.machines.private_ip_range.contains(second_ip));
    edge.shutdown().await;
}

/// A stranger listening on a machine's address and port (another edgewake's machine on
/// a shared address) never answers a request for the machine: the readiness probe
/// finds the socket is not the machine's, the machine cannot bind and exits, and the
/// client gets 502 — not the stranger's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_address_never_answers() {
    let edge = TestEdge::start().await;
    let machine = edge.app_with_machine(RUNTIME_IMAGE).created().await;
    let ip: Ipv4Addr = machine.json["private_ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stranger = TcpListener::bind(SocketAddr::from((ip, 8080))).unwrap();
    std::thread::spawn(move || answer_as_stranger(stranger));

    let res = edge.request(APP, "/").await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert!(!body.contains("stranger"), "answered by a stranger: {body}");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(edge.machine(APP, &machine.id).await["state"], "stopped");
    edge.shutdown().await;
}

/// Answers every connection with a 200 that says who it is.
fn answer_as_stranger(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nstranger");
    }
}
