//! The HTTP/1.1 fast path: a kept-alive client connection and the machine connection
//! it owns, served by the connection's one task. The request head is parsed from a
//! reused buffer (`head`), goes through the same phases as on hyper's path (`admit`:
//! route, place, the machine's headers; the lifecycle's `ready_in` with the app's
//! sleeping rules), and is written rewritten to the machine (`machine`: its own
//! connection, under the upstream budget and the machine's read and send timeouts); the answer's head is rewritten (`response`: the wake's fields added,
//! a keep-awake taken out and applied) and its body passed on as framed (`chunked`
//! finds its end); the request is counted in the metrics. No hyper dispatch, channel
//! or task per request.
//!
//! Anything unusual goes to hyper's path for the rest of the connection, before a byte
//! of it is used (`Step::Fallback`): see `head` and `admit` for what; a machine's
//! `fly-replay` answer too (the request has no body, so hyper's path can send it
//! again and follow the replay).
//!
//! hyper's path borrows from here too: an HTTP/2 stream without a body is sent over a
//! parked machine connection (`lent`), its answer's head parsed by `response`.

mod admit;
pub mod chunked;
pub mod head;
pub mod lent;
mod machine;
mod parked;
pub mod response;

use super::{
    Inbound, MAX_CONNECT_ATTEMPTS, PortRules, Proxy, ProxyBody, ProxyError, ProxySettings,
    keep_awake,
};
use crate::connection::WaitTimer;
use crate::lifecycle::{AcquireError, Ready};
use crate::metrics::{InFlightGauge, RecentSeries};
use admit::{Routed, admit};
use bytes::BytesMut;
use head::RequestHead;
use http::Response;
use http_body_util::BodyExt;
pub use machine::Destination;
use machine::{AnswerWaits, Client, Exchange, MachineConnection};
pub use parked::{MIN_PARKED_PER_MACHINE, Parked};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes read from a client at a time, and the buffer's starting size.
pub const READ_BUFFER: usize = 8 * 1024;

/// A client connection on the fast path.
pub struct Connection<C> {
    pub io: C,
    /// What the client sent that is not used yet (the next request, pipelined).
    pub buf: BytesMut,
    /// The request head for the machine; `out_head` bytes of it are the same for every
    /// machine the request may go to (`head::write_request_head`).
    out: Vec<u8>,
    out_head: usize,
    /// The answer's head (and first body bytes) for the client.
    answer: Vec<u8>,
    machine: Option<MachineConnection>,
    /// The map the last request's head was parsed into, for the next one.
    spare: http::HeaderMap,
    /// The metric series of the last request, for the next.
    series: RecentSeries,
    /// The timers of the waits for the client's next request and for the machine's
    /// answers.
    head_wait: WaitTimer,
    answer_waits: AnswerWaits,
    pub inbound: Inbound,
    pub peer: SocketAddr,
}

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    KeepAlive,
    Close,
    /// Hyper's path serves the connection from here; `buf` holds all it must read.
    Fallback,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Connection<C> {
    pub fn new(io: C, inbound: Inbound, peer: SocketAddr) -> Connection<C> {
        Connection {
            io,
            buf: BytesMut::with_capacity(READ_BUFFER),
            // Grown by the first request to what its heads need, and kept for the next.
            out: Vec::new(),
            out_head: 0,
            answer: Vec::new(),
            machine: None,
            spare: http::HeaderMap::new(),
            head_wait: WaitTimer::unset(),
            answer_waits: AnswerWaits::new(),
            series: RecentSeries::default(),
            inbound,
            peer,
        }
    }

    /// Whether the connection holds more than its read buffer: a connection to a
    /// machine, or the heads' buffers and map an earlier request grew.
    pub fn holds_more_than_its_buffer(&self) -> bool {
        self.machine.is_some()
            || self.out.capacity() > 0
            || self.answer.capacity() > 0
            || self.spare.capacity() > 0
    }

    /// Leaves the machine connection for the next client connection (this one ends).
    pub fn park_machine(&mut self, proxy: &Proxy) {
        if let Some(machine) = self.machine.take() {
            proxy.upstreams.parked.park(machine);
        }
    }

    /// Closes the connection to the machine and lets the heads' buffers and map go
    /// (the client has gone quiet): an idle client connection holds its read buffer
    /// only.
    pub fn release_held(&mut self) {
        self.machine = None;
        self.out = Vec::new();
        self.answer = Vec::new();
        self.spare = http::HeaderMap::new();
    }

    /// Parses the request head at the start of the buffer (see `head::parse_request`).
    pub fn parse_head(&mut self, max_headers: usize) -> head::Parsed {
        head::parse_request(&mut self.buf, max_headers, &mut self.spare)
    }

    /// Reads more of what the client sends by `deadline` (`None`: nothing came by
    /// then); 0 at its end.
    pub async fn read_more_by(&mut self, deadline: Instant) -> Option<std::io::Result<usize>> {
        self.buf.reserve(READ_BUFFER);
        self.head_wait.set(deadline);
        tokio::select! {
            biased;
            read = self.io.read_buf(&mut self.buf) => Some(read),
            () = self.head_wait.elapsed() => None,
        }
    }

    /// Serves one request whose head was parsed: counted, answered, reported as on
    /// hyper's path.
    pub async fn serve(&mut self, proxy: &Proxy, mut head: RequestHead) -> Step {
        let settings = proxy.settings.load_full();
        self.out.clear();
        let Some(routed) = admit(
            proxy,
            &settings,
            &mut head,
            self.inbound,
            self.peer,
            &mut self.out,
        ) else {
            head::unread(&mut self.buf, &head.raw);
            return Step::Fallback;
        };
        self.out_head = self.out.len();
        let began = Instant::now();
        let metrics = &proxy.supervisor.metrics;
        let _counted = InFlightGauge::enter(&metrics.in_flight);
        let request_id = super::request_id(&settings);
        let app = routed.app.clone();
        let mut served = FastServed::default();
        let outcome = self
            .forward(proxy, &settings, &head, routed, &request_id, &mut served)
            .await;
        let (status, step) = match outcome {
            Ok(Answer::Sent { status, step }) => (status, step),
            Ok(Answer::Replay) => {
                head::unread(&mut self.buf, &head.raw);
                return Step::Fallback;
            }
            Err(error) => {
                let status = error.status().as_u16();
                (status, Box::pin(self.refuse(&error, &request_id)).await)
            }
        };
        let took = began.elapsed();
        self.series
            .request(metrics, &app.record.name, status, served.region(), took);
        if let Some(waited) = served.waited {
            metrics.cold_start(&app.record.name, waited);
        }
        head::recycle(head, &mut self.spare);
        step
    }

    /// Ready, then the exchange with the machine; a machine that could not be reached
    /// at all gives way to the next, as on hyper's path.
    async fn forward(
        &mut self,
        proxy: &Proxy,
        settings: &ProxySettings,
        head: &RequestHead,
        routed: Routed,
        request_id: &str,
        served: &mut FastServed,
    ) -> Result<Answer, ProxyError> {
        let Routed {
            app,
            mut plan,
            manner,
        } = routed;
        let port = self.inbound.service_port;
        let mut unreached = None;
        loop {
            let ready = match proxy.supervisor.ready_in(&app, port, &plan, manner).await {
                Ok(ready) => ready,
                Err(AcquireError::Asleep { waking, .. }) => {
                    let port_rules = PortRules::of(&app, port);
                    let rules = port_rules.http();
                    let is_head = head.req.method() == http::Method::HEAD;
                    let metrics = &proxy.supervisor.metrics;
                    let answer =
                        settings
                            .sleeping
                            .answer(metrics, &app.record.name, rules, waking, is_head);
                    let answer = Box::pin(self.write_edge_answer(answer, head.close));
                    return Ok(answer.await);
                }
                Err(e) => return Err(unreached.unwrap_or(ProxyError::from(e))),
            };
            served.add_wait(ready.waited);
            // Shared, not its names copied: the id is copied only when the exchange failed.
            let machine = ready.machine.clone();
            served.machine = Some(machine.clone());
            let exchange = self.exchange(proxy, settings, head, ready, request_id, served.waited);
            let error = match exchange.await {
                Ok(answer) => return Ok(answer),
                Err(Exchange::Unsent(error)) => error,
                Err(Exchange::Sent(error) | Exchange::Dropped(error)) => {
                    let machine = machine.id.clone();
                    return Err(ProxyError::Upstream { machine, error });
                }
                Err(Exchange::Answering) => {
                    return Ok(Answer::Sent {
                        status: 200,
                        step: Step::Close,
                    });
                }
            };
            let machine = machine.id.clone();
            plan.avoid.push(machine.clone());
            let error = ProxyError::Upstream { machine, error };
            if plan.avoid.len() >= MAX_CONNECT_ATTEMPTS {
                return Err(error);
            }
            tracing::debug!("trying another machine: {error}");
            unreached = Some(error);
        }
    }

    /// One exchange with a ready machine over this connection's own machine connection.
    async fn exchange(
        &mut self,
        proxy: &Proxy,
        settings: &ProxySettings,
        head: &RequestHead,
        ready: Ready,
        request_id: &str,
        waited: Option<std::time::Duration>,
    ) -> Result<Answer, Exchange> {
        if ready.machine.node.is_some() {
            // Hosted by another node: hyper's path reaches it over that node's backhaul.
            return Ok(Answer::Replay);
        }
        let addr = SocketAddr::from((ready.machine.private_ip, ready.internal_port));
        self.out.truncate(self.out_head);
        head::finish_request_head(&mut self.out, ready.preferred_unavailable);
        let facts = response::EdgeFacts {
            request_id,
            machine_id: &ready.machine.id,
            region: &ready.machine.region,
            head_request: head.req.method() == http::Method::HEAD,
            close: head.close,
            waited,
        };
        let resendable = head.req.method().is_idempotent();
        let to = Destination {
            addr,
            budget: &proxy.upstreams.budget,
            parked: &proxy.upstreams.parked,
            policy: settings.machine,
        };
        let mut answer = std::mem::take(&mut self.answer);
        let answered = self.round_trip(&to, resendable, &facts, &mut answer).await;
        self.answer = answer;
        let (answered, machine) = answered?;
        let keep_awake_max = settings.sleeping.wake.keep_awake_max;
        if let Some(value) = &answered.keep_awake
            && let Ok(value) = http::HeaderValue::from_bytes(value)
        {
            let mut fields = http::HeaderMap::new();
            fields.insert(keep_awake::KEEP_AWAKE_HEADER, value);
            keep_awake::take(
                &proxy.supervisor,
                &ready.machine,
                &mut fields,
                keep_awake_max,
            );
        }
        drop(ready.in_flight); // the body is done: the machine is no longer busy with it
        if answered.replay {
            // The machine's answer is not read: its connection is not reused.
            return Ok(Answer::Replay);
        }
        if answered.reusable {
            self.machine = Some(machine);
        }
        let step = match head.close || answered.framing == response::BodyFraming::UntilClose {
            true => Step::Close,
            false => Step::KeepAlive,
        };
        Ok(Answer::Sent {
            status: answered.status,
            step,
        })
    }

    /// The request (in `out`) to the machine and its answer to the client, over this
    /// connection's machine connection; a reused one the machine had closed meanwhile
    /// is replaced once, when the request may be sent again.
    async fn round_trip(
        &mut self,
        to: &Destination<'_>,
        resendable: bool,
        facts: &response::EdgeFacts<'_>,
        answer: &mut Vec<u8>,
    ) -> Result<(response::ResponseHead, MachineConnection), Exchange> {
        let mut machine = MachineConnection::for_destination(self.machine.take(), to).await?;
        answer.clear();
        let mut client = Client {
            io: &mut self.io,
            pipelined: &mut self.buf,
            waits: &mut self.answer_waits,
        };
        let first = machine
            .round_trip(&self.out, &mut client, facts, answer)
            .await;
        match first {
            Err(Exchange::Dropped(_)) if machine.was_reused() && resendable => {
                drop(machine); // its budget slot goes back before a new one is taken
                let connect = MachineConnection::connect(to.addr, to.budget, to.policy);
                let mut machine = Box::pin(connect).await?;
                answer.clear();
                let answered = machine.round_trip(&self.out, &mut client, facts, answer);
                Ok((answered.await.map_err(Exchange::settled)?, machine))
            }
            other => Ok((other.map_err(Exchange::settled)?, machine)),
        }
    }

    /// An answer of the edge's own (a sleeping app's) written whole.
    async fn write_edge_answer(&mut self, answer: Response<ProxyBody>, close: bool) -> Answer {
        let status = answer.status().as_u16();
        self.write_whole(answer, close).await;
        let step = match close {
            true => Step::Close,
            false => Step::KeepAlive,
        };
        Answer::Sent { status, step }
    }

    /// A request refused before it was routed (its framing is ambiguous): 400, closed.
    pub async fn refuse_unrouted(&mut self, proxy: &Proxy, error: &ProxyError) -> Step {
        let request_id = super::request_id(&proxy.settings.load());
        self.refuse(error, &request_id).await
    }

    /// The client hears why its request was not forwarded, as on hyper's path, and the
    /// connection closes (a half-sent request may be in the way).
    pub async fn refuse(&mut self, error: &ProxyError, request_id: &str) -> Step {
        tracing::debug!(peer = %self.peer, "proxy error: {error}");
        self.write_whole(super::error_response(error, request_id), true)
            .await;
        Step::Close
    }

    /// Writes a response the edge made, its body collected.
    async fn write_whole(&mut self, response: Response<ProxyBody>, close: bool) {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.out.clear();
        let reason = parts.status.canonical_reason().unwrap_or("");
        response::write_status_line(&mut self.out, parts.status.as_u16(), reason);
        head::write_fields(&mut self.out, &parts.headers);
        if !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            let length = body.len().to_string();
            head::write_field(&mut self.out, b"content-length", length.as_bytes());
        }
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&body);
        let _ = self.io.write_all(&self.out).await;
        let _ = self.io.flush().await;
    }
}

/// What a request on the fast path learned on its way: hyper's path's `Served` less
/// what only the access log reads (the fast path serves no request that is logged),
/// and the machine shared rather than its names copied.
#[derive(Default)]
struct FastServed {
    /// Time spent waiting for wakes (summed over attempts).
    waited: Option<std::time::Duration>,
    /// The machine the last attempt went to.
    machine: Option<std::sync::Arc<crate::machines::Machine>>,
}

impl FastServed {
    fn add_wait(&mut self, waited: Option<std::time::Duration>) {
        super::report::add_wait(&mut self.waited, waited);
    }

    /// The region that served the request (`""` when no machine did), for the metrics.
    fn region(&self) -> &str {
        self.machine.as_ref().map_or("", |m| m.region.as_str())
    }
}

/// How a request on the fast path ended.
enum Answer {
    /// The client has its answer (`status`).
    Sent { status: u16, step: Step },
    /// The machine asked for a replay, or lives on another node: hyper's path serves
    /// the request (it has no body, and this path sent it nowhere or only to a machine
    /// that asked for it to go elsewhere).
    Replay,
}
