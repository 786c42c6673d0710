//! A fast-path machine connection lent to one request of hyper's path: an HTTP/2
//! client's stream (or a relayed request) without a body. Its head is written in one
//! buffer, the answer's head parsed with httparse, and its body read straight off the
//! connection by the `LentBody` the client's stream polls: no hyper client, no
//! connection task, no channel between them. The connection comes from this runtime's
//! parked lot (or is opened under the budget) and goes back to it when the body has
//! been read to its end, for the next request or a fast-path client connection.
//!
//! The request's wait for the answer's head is timed by its caller (`forward`), each
//! next part of the body by the `PacedBody` around it.

use super::chunked::ChunkedDecoder;
use super::head::write_fields;
use super::machine::{
    Destination, Exchange, MAX_RESPONSE_HEAD, MachineConnection, dropped, sent, sent_because,
};
use super::parked::Parked;
use super::response::{AnswerHead, BodyFraming, parse_answer};
use crate::connection::BoxError;
use crate::proxy::upstream::{MachineBody, SendFailure, UpstreamError};
use bytes::{Buf, Bytes};
use http::{Method, Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Whether `req` may be sent over a lent connection: it has no body to stream.
pub fn may_borrow(req: &Request<MachineBody>) -> bool {
    req.body().is_end_stream() && req.method() != Method::CONNECT
}

/// Sends `req` (headers written for the machine, Host set) to `to` and reads the head
/// of its answer; the body comes as the client polls it. A reused connection that
/// ends before a byte of the answer is replaced once for an idempotent request (as on
/// the fast path). When no connection could be made the request comes back unsent, so
/// it may go to another machine: after such a replacement too, since only an
/// idempotent request is sent twice.
pub async fn send(
    to: &Destination<'_>,
    req: Request<MachineBody>,
) -> Result<Response<LentBody>, SendFailure> {
    let mut head = Vec::with_capacity(1024);
    write_request_head(&mut head, &req);
    let head_request = req.method() == Method::HEAD;
    let mut machine = match MachineConnection::for_destination(None, to).await {
        Ok(machine) => machine,
        Err(failure) => return Err(failure_of(failure, req)),
    };
    let mut answered = ask(&mut machine, &head, head_request).await;
    if let Err(Exchange::Dropped(_)) = &answered
        && machine.was_reused()
        && req.method().is_idempotent()
    {
        // The machine had closed the parked connection: once more on a new one.
        drop(machine); // its budget slot goes back before a new one is taken
        let connect = MachineConnection::connect(to.addr, to.budget, to.policy);
        machine = match Box::pin(connect).await {
            Ok(machine) => machine,
            Err(failure) => return Err(failure_of(failure, req)),
        };
        answered = ask(&mut machine, &head, head_request).await;
    }
    match answered {
        Ok(answer) => Ok(lend(machine, answer, to.parked)),
        Err(failure) => Err(failure_of(failure, req)),
    }
}

/// The request head as an HTTP/1.1 machine reads it: origin-form target, every field.
fn write_request_head(out: &mut Vec<u8>, req: &Request<MachineBody>) {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, req.headers());
    out.extend_from_slice(b"\r\n");
}

fn failure_of(failure: Exchange, req: Request<MachineBody>) -> SendFailure {
    match failure {
        Exchange::Unsent(error) => SendFailure::unsent(error, req),
        Exchange::Sent(error) | Exchange::Dropped(error) => SendFailure {
            error,
            unsent: None,
        },
        // Not made here: no client is watched, nothing is answered yet.
        Exchange::Answering => SendFailure {
            error: UpstreamError::Exchange("the exchange was cut".into()),
            unsent: None,
        },
    }
}

/// Writes the head and reads the final answer's head (an interim 1xx is passed over).
async fn ask(
    machine: &mut MachineConnection,
    head: &[u8],
    head_request: bool,
) -> Result<AnswerHead, Exchange> {
    machine.send(head).await?;
    let mut answered_any = !machine.buffered().is_empty();
    loop {
        let parsed = parse_answer(machine.buffered(), head_request).map_err(|e| sent(&e))?;
        if let Some(answer) = parsed {
            machine.buffered().advance(answer.len);
            if answer.status.is_informational() {
                continue;
            }
            return Ok(answer);
        }
        if machine.buffered().len() > MAX_RESPONSE_HEAD {
            return Err(sent_because("response head too large"));
        }
        match poll_fn(|cx| machine.poll_fill(cx)).await {
            Ok(0) if !answered_any => return Err(dropped(None)),
            Ok(0) => {
                return Err(sent_because(
                    "the machine closed the connection before answering",
                ));
            }
            Ok(_) => answered_any = true,
            Err(e) if !answered_any => return Err(dropped(Some(&e))),
            Err(e) => return Err(sent(&e)),
        }
    }
}

fn lend(machine: MachineConnection, answer: AnswerHead, parked: &Parked) -> Response<LentBody> {
    let left = match answer.framing {
        BodyFraming::Empty | BodyFraming::Length(0) => Left::Nothing,
        BodyFraming::Length(n) => Left::Length(n),
        BodyFraming::Chunked => Left::Chunked(Box::default()),
        BodyFraming::UntilClose => Left::UntilClose,
    };
    let mut body = LentBody {
        machine: Some(machine),
        left,
        reusable: answer.reusable,
        parked: parked.clone(),
        trailers: None,
    };
    if matches!(body.left, Left::Nothing) {
        body.finish();
    }
    let mut response = Response::new(body);
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.fields;
    response
}

/// What is left of the answer's body.
enum Left {
    Nothing,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the machine closes the connection.
    UntilClose,
}

/// The answer's body, read off the machine connection as it is polled; at its end the
/// connection is parked again when the machine lets it be reused.
pub struct LentBody {
    machine: Option<MachineConnection>,
    left: Left,
    reusable: bool,
    parked: Parked,
    /// A chunked body's trailers, given after its last data.
    trailers: Option<http::HeaderMap>,
}

#[derive(Debug, thiserror::Error)]
#[error("the machine's answer was cut: {0}")]
pub struct AnswerCut(String);

impl LentBody {
    /// The body has ended: the connection goes back to the lot if nothing unasked-for
    /// followed the answer.
    fn finish(&mut self) {
        self.left = Left::Nothing;
        if let Some(mut machine) = self.machine.take()
            && self.reusable
            && machine.buffered().is_empty()
        {
            self.parked.park(machine);
        }
    }

    /// The next data from what the machine has sent (`None`: none buffered yet).
    fn next_buffered(&mut self) -> Result<Option<Bytes>, AnswerCut> {
        let Some(machine) = self.machine.as_mut() else {
            return Ok(None);
        };
        let buf = machine.buffered();
        let data = match &mut self.left {
            Left::Nothing => None,
            Left::Length(left) => {
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                let done = *left == 0;
                let data = (take > 0).then(|| buf.split_to(take).freeze());
                if done {
                    self.finish();
                }
                data
            }
            Left::Chunked(decoder) => {
                let decoded = decoder.decode(buf).map_err(|e| AnswerCut(e.to_string()))?;
                if decoded.done {
                    self.trailers = decoder.trailers().map(|mut trailers| {
                        // Connection-specific names would make HTTP/2 refuse them all.
                        crate::proxy::headers::strip_hop_by_hop(&mut trailers);
                        trailers
                    });
                    self.finish();
                }
                decoded.data
            }
            Left::UntilClose => (!buf.is_empty()).then(|| buf.split().freeze()),
        };
        Ok(data)
    }
}

impl Body for LentBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.next_buffered()? {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            let Some(machine) = this.machine.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(machine.poll_fill(cx)) {
                Ok(0) if matches!(this.left, Left::UntilClose) => {
                    this.machine = None;
                    this.left = Left::Nothing;
                }
                Ok(0) => {
                    this.machine = None;
                    let cut = AnswerCut("the machine closed the connection".into());
                    return Poll::Ready(Some(Err(cut.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    this.machine = None;
                    return Poll::Ready(Some(Err(AnswerCut(e.to_string()).into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Nothing) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Nothing => SizeHint::with_exact(0),
            Left::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
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
        let (addr, served) =
            machine_scripted(vec![vec![Some(OK), None], vec![Some(OK)]], true).await;
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

        const TWO_LENGTHS: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
        let (addr, _served) =
            machine_scripted(vec![vec![Some(OK), Some(TWO_LENGTHS)]], false).await;
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
}
