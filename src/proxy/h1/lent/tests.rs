//! `lent` on real sockets: a machine scripted request by request.

use super::*;
use crate::connection::{MachinePolicy, Pace};
use crate::proxy::upstream::Budget;
use http_body_util::{BodyExt, Either, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const POLICY: MachinePolicy = MachinePolicy {
    read: Pace::timeout(Duration::from_secs(5)),
    send: Pace::timeout(Duration::from_secs(5)),
};

/// What a machine does with each request head it reads on one connection: answers
/// it, or (`None`) hangs up.
type Script = Vec<Option<&'static [u8]>>;

/// A machine on a real socket: each request head it reads gets the next of
/// `answers`; then it keeps the connection until the edge closes it, or hangs up
/// (`hang_up`). Gives back the heads it read.
async fn machine(
    answers: Vec<&'static [u8]>,
    hang_up: bool,
) -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let script = answers.into_iter().map(Some).collect();
    machine_scripted(vec![script], hang_up).await
}

/// A machine whose n-th connection follows `scripts[n]` (it accepts no more).
async fn machine_scripted(
    scripts: Vec<Script>,
    hang_up: bool,
) -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let mut heads = Vec::new();
        for script in scripts {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let connection = tokio::spawn(async move {
                let mut heads = Vec::new();
                for answer in script {
                    read_head(&mut tcp, &mut heads).await;
                    match answer {
                        Some(answer) => tcp.write_all(answer).await.unwrap(),
                        None => return heads,
                    }
                }
                if !hang_up {
                    let _ = tcp.read_to_end(&mut Vec::new()).await;
                }
                heads
            });
            heads.push(connection);
        }
        let mut all = Vec::new();
        for connection in heads {
            all.extend(connection.await.unwrap());
        }
        String::from_utf8(all).unwrap()
    });
    (addr, served)
}

async fn read_head(tcp: &mut tokio::net::TcpStream, heads: &mut Vec<u8>) {
    let start = heads.len();
    while !heads[start..].ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if tcp.read(&mut byte).await.unwrap() == 0 {
            return;
        }
        heads.push(byte[0]);
    }
}

/// `send`, failing the test rather than hanging when nothing comes back.
async fn within(
    to: &Destination<'_>,
    req: Request<MachineBody>,
) -> Result<Response<LentBody>, SendFailure> {
    let sent = tokio::time::timeout(Duration::from_secs(5), send(to, req)).await;
    sent.expect("an answer or a failure within 5 s")
}

fn get(path: &str) -> Request<MachineBody> {
    Request::get(path)
        .header("host", "app.example")
        .header("x-one", "1")
        .body(Either::Right(Full::default()))
        .unwrap()
}

struct Edge {
    budget: Budget,
    parked: Parked,
}

impl Edge {
    fn new() -> Edge {
        Edge {
            budget: Budget::new(4),
            parked: Parked::start(1, 4),
        }
    }

    fn to(&self, addr: SocketAddr) -> Destination<'_> {
        Destination {
            addr,
            budget: &self.budget,
            parked: &self.parked,
            policy: POLICY,
        }
    }
}

/// The head goes in origin form with every field; a Content-Length answer comes
/// whole, with the machine's fields, and its connection is parked for the next.
#[tokio::test]
async fn length_answer_then_the_connection_is_parked() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-machine: yes\r\n\r\nhello";
    let (addr, served) = machine(vec![answer, answer], false).await;
    let edge = Edge::new();
    for _ in 0..2 {
        let res = within(&edge.to(addr), get("https://app.example/p?q=1")).await;
        let res = res.ok().unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-machine"], "yes");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }
    drop(edge); // closes the parked connection
    let heads = served.await.unwrap();
    let one = "GET /p?q=1 HTTP/1.1\r\nhost: app.example\r\nx-one: 1\r\n\r\n";
    assert_eq!(heads, one.repeat(2), "both requests on the one connection");
}

/// A chunked answer comes decoded, its trailers after its data; an interim 103
/// is passed over.
#[tokio::test]
async fn chunked_answer_with_trailers_after_an_interim_one() {
    let answer: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
        HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-checksum: 9\r\n\r\n";
    let (addr, _served) = machine(vec![answer], false).await;
    let edge = Edge::new();
    let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
    assert_eq!(res.status(), 200);
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "9");
    assert_eq!(&collected.to_bytes()[..], b"abcdefg");
    assert!(edge.parked.take(addr).is_some(), "parked after its end");
}

/// An answer without a length runs until the machine closes; a Content-Length
/// answer cut short fails the body, and its connection is not kept.
#[tokio::test]
async fn until_close_and_cut_answers() {
    let (addr, _served) = machine(vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"], true).await;
    let edge = Edge::new();
    let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"all of it");
    assert!(edge.parked.take(addr).is_none());

    let (addr, _served) = machine(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc"],
        true,
    )
    .await;
    let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
    let error = res.into_body().collect().await.err().unwrap();
    assert!(error.to_string().contains("cut"), "{error}");
    assert!(edge.parked.take(addr).is_none());
    assert_eq!(
        edge.budget.available(),
        4,
        "every connection's slot is back"
    );
}

/// A reused connection the machine hangs up on before answering is replaced once
/// for a GET; a POST fails as sent (it may have been done); a bad answer head on a
/// reused connection is not sent again.
#[tokio::test]
async fn a_dropped_reused_connection_is_replaced_only_for_idempotent_requests() {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let edge = Edge::new();
    let (addr, served) = machine_scripted(vec![vec![Some(OK), None], vec![Some(OK)]], true).await;
    for _ in 0..2 {
        let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(
        served.await.unwrap().matches("GET / ").count(),
        3,
        "sent again"
    );

    let (addr, _served) = machine_scripted(vec![vec![Some(OK), None]], false).await;
    let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
    res.into_body().collect().await.unwrap();
    let mut post = get("/");
    *post.method_mut() = Method::POST;
    let failure = within(&edge.to(addr), post).await.err().unwrap();
    assert!(failure.unsent.is_none() && failure.error.request_sent());

    const TWO_LENGTHS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
    let (addr, _served) = machine_scripted(vec![vec![Some(OK), Some(TWO_LENGTHS)]], false).await;
    let res = within(&edge.to(addr), get("/")).await.ok().unwrap();
    res.into_body().collect().await.unwrap();
    let failure = within(&edge.to(addr), get("/")).await.err().unwrap();
    assert!(
        failure.error.to_string().contains("Content-Length"),
        "{}",
        failure.error
    );
}

/// A HEAD answer has no body whatever its Content-Length says; a machine that
/// hangs up before answering fails the exchange as sent (not to be sent again).
#[tokio::test]
async fn head_answers_and_a_machine_that_hangs_up() {
    let (addr, _served) = machine(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n"],
        false,
    )
    .await;
    let edge = Edge::new();
    let mut head = get("/");
    *head.method_mut() = Method::HEAD;
    let res = within(&edge.to(addr), head).await.ok().unwrap();
    assert_eq!(res.headers()["content-length"], "50");
    assert!(res.body().is_end_stream());
    assert!(edge.parked.take(addr).is_some());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.read(&mut [0u8; 64]).await;
    });
    let failure = within(&edge.to(addr), get("/")).await.err().unwrap();
    assert!(failure.unsent.is_none());
    assert!(failure.error.request_sent(), "{}", failure.error);
}
