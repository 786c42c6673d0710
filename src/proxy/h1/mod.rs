//! The HTTP/1.1 fast path: a kept-alive client connection and the machine connection
//! it owns, served by the connection's one task. The request head is parsed from a
//! reused buffer (`head`), goes through the same phases as on hyper's path (`decide`,
//! the lifecycle's `ready`), and is written rewritten, with its Content-Length body,
//! to the machine; the answer's head is rewritten (`response`) and its body passed on
//! as framed (`chunked` finds its end). No hyper dispatch, channel or task per request.
//!
//! Anything unusual goes to hyper's path for the rest of the connection, before a byte
//! of it is used (`Step::Fallback`): see `head` for what, and requests the edge answers
//! itself, unknown hosts, `h2_backend` services.

pub mod chunked;
pub mod head;
mod machine;
pub mod response;

use super::{Decision, Inbound, MAX_CONNECT_ATTEMPTS, Proxy, ProxyError, decide, headers};
use crate::lifecycle::Ready;
use crate::machines::App;
use bytes::BytesMut;
use head::RequestHead;
use http_body_util::BodyExt;
use machine::{Exchange, MachineConnection};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from a client at a time, and the buffer's starting size.
pub const READ_BUFFER: usize = 8 * 1024;

/// A client connection on the fast path.
pub struct Connection<C> {
    pub io: C,
    /// What the client sent that is not used yet (the next request, pipelined).
    pub buf: BytesMut,
    out: Vec<u8>,
    /// The answer's head (and first body bytes) for the client.
    answer: Vec<u8>,
    machine: Option<MachineConnection>,
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
            out: Vec::with_capacity(READ_BUFFER),
            answer: Vec::with_capacity(READ_BUFFER),
            machine: None,
            inbound,
            peer,
        }
    }

    /// Reads more of what the client sends; 0 at its end.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_BUFFER);
        self.io.read_buf(&mut self.buf).await
    }

    /// Serves one request whose head was parsed.
    pub async fn serve(&mut self, proxy: &Proxy, mut head: RequestHead) -> Step {
        let settings = proxy.settings.load();
        let request_id = format!("{}-{}", crate::ids::ulid(), settings.edge_region);
        let decided = decide(proxy, &settings, &mut head.req, self.inbound, self.peer);
        drop(settings);
        let (app, plan) = match decided {
            Ok(Decision::Routed { app, plan })
                if !uses_h2_backend(&app, self.inbound.service_port) =>
            {
                (app, plan)
            }
            _ => {
                head::unread(&mut self.buf, &head.raw);
                return Step::Fallback;
            }
        };
        match self.forward(proxy, &head, &app, plan, &request_id).await {
            Ok(step) => step,
            Err(error) => self.refuse(&error, Some(&request_id)).await,
        }
    }

    /// Ready, then the exchange with the machine; a machine that could not be reached
    /// at all gives way to the next, as on hyper's path.
    async fn forward(
        &mut self,
        proxy: &Proxy,
        head: &RequestHead,
        app: &App,
        mut plan: crate::lifecycle::Plan,
        request_id: &str,
    ) -> Result<Step, ProxyError> {
        let mut unreached = None;
        loop {
            let ready = match proxy.ready(app, self.inbound.service_port, &plan).await {
                Ok(ready) => ready,
                Err(e) => return Err(unreached.unwrap_or(e)),
            };
            let machine = ready.machine.id.clone();
            let error = match self.exchange(head, ready, request_id).await {
                Ok(step) => return Ok(step),
                Err(Exchange::Unsent(error)) => error,
                Err(Exchange::Sent(error)) => return Err(ProxyError::Upstream { machine, error }),
                Err(Exchange::Answering) => return Ok(Step::Close),
            };
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
        head: &RequestHead,
        ready: Ready,
        request_id: &str,
    ) -> Result<Step, Exchange> {
        let addr = SocketAddr::from((ready.machine.private_ip, ready.internal_port));
        self.out.clear();
        head::write_request_head(&mut self.out, &head.req, ready.preferred_unavailable);
        let mut machine = MachineConnection::reuse_or_connect(self.machine.take(), addr).await?;
        let resendable = head.body == 0 && head.req.method().is_idempotent();
        let in_buffer =
            usize::try_from(head.body).map_or(self.buf.len(), |n| n.min(self.buf.len()));
        self.out.extend_from_slice(&self.buf.split_to(in_buffer));
        let rest = head.body - in_buffer as u64;
        let facts = response::EdgeFacts {
            request_id,
            machine_id: &ready.machine.id,
            region: &ready.machine.region,
            head_request: head.req.method() == http::Method::HEAD,
            close: head.close,
        };
        let mut answer = Vec::new();
        std::mem::swap(&mut answer, &mut self.answer);
        answer.clear();
        let answered = machine
            .round_trip(
                &self.out,
                resendable,
                rest,
                &mut self.io,
                &facts,
                &mut answer,
            )
            .await;
        self.answer = answer;
        let answered = answered?;
        drop(ready.in_flight); // the body is done: the machine is no longer busy with it
        if answered.reusable {
            self.machine = Some(machine);
        }
        Ok(
            match head.close || answered.framing == response::BodyFraming::UntilClose {
                true => Step::Close,
                false => Step::KeepAlive,
            },
        )
    }

    /// The client hears why its request was not forwarded, as on hyper's path, and the
    /// connection closes (an unread body, or a half-sent request, may be in the way).
    pub async fn refuse(&mut self, error: &ProxyError, request_id: Option<&str>) -> Step {
        tracing::debug!(peer = %self.peer, "proxy error: {error}");
        let (parts, body) = super::error_response(error).into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.out.clear();
        let reason = parts.status.canonical_reason().unwrap_or("");
        response::write_status_line(&mut self.out, parts.status.as_u16(), reason);
        head::write_fields(&mut self.out, &parts.headers);
        if let Some(id) = request_id {
            let name = headers::FLY_REQUEST_ID;
            head::write_field(&mut self.out, name.as_str().as_bytes(), id.as_bytes());
        }
        head::write_field(
            &mut self.out,
            b"content-length",
            body.len().to_string().as_bytes(),
        );
        self.out.extend_from_slice(b"connection: close\r\n\r\n");
        self.out.extend_from_slice(&body);
        let _ = self.io.write_all(&self.out).await;
        let _ = self.io.flush().await;
        Step::Close
    }
}

/// Whether the app's services on `port` speak HTTP/2 to machines (hyper's path does).
fn uses_h2_backend(app: &App, port: u16) -> bool {
    app.with_machines(|machines| {
        machines.iter().any(|m| {
            m.spec()
                .port_for(port)
                .is_some_and(|(_, p)| p.http_options.h2_backend)
        })
    })
}
