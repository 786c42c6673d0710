//! A fast-path machine connection lent to one request of hyper's path that has no
//! body and no connection of its own: an HTTP/2 client's stream, a request another
//! node relayed, an HTTP/1.0 request. Its head is written in one
//! buffer, the answer's head parsed with httparse, and its body read straight off the
//! connection by the `LentBody` the client's stream polls: no hyper client, no
//! connection task, no channel between them. The connection comes from this runtime's
//! parked lot (or is opened under the budget) and goes back to it when the body has
//! been read to its end, for the next request or a fast-path client connection.
//!
//! The request's wait for the answer's head is timed by its caller (`forward`), each
//! next part of the body by the `PacedBody` around it.

use super::head::{write_fields, write_request_line};
use super::machine::{
    Destination, Exchange, MAX_RESPONSE_HEAD, MachineConnection, head_cut, sent, sent_because,
};
use super::parked::Parked;
use super::response::{AnswerHead, parse_answer};
use crate::proxy::upstream::{MachineBody, SendFailure, UpstreamError};
use bytes::Buf;
use http::{Method, Request, Response};
use hyper::body::Body;
use std::future::poll_fn;

mod body;
#[cfg(test)]
mod tests;

pub use body::LentBody;

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
    write_request_line(out, req.method(), req.uri());
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
            Ok(0) => return Err(head_cut(None, answered_any)),
            Ok(_) => answered_any = true,
            Err(e) => return Err(head_cut(Some(&e), answered_any)),
        }
    }
}

fn lend(machine: MachineConnection, answer: AnswerHead, parked: &Parked) -> Response<LentBody> {
    let body = LentBody::new(machine, answer.framing, answer.reusable, parked.clone());
    let mut response = Response::new(body);
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.fields;
    response
}
