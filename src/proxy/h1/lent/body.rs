//! The body of an answer on a lent connection: read off it as the stream polls, the
//! connection parked again at its end.

use super::super::chunked::ChunkedDecoder;
use super::super::machine::MachineConnection;
use super::super::machine::take_data;
use super::super::parked::Parked;
use super::super::response::BodyFraming;
use crate::connection::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

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
    /// The body of an answer framed so, read off `machine`; one with nothing to read
    /// gives the connection back at once.
    pub(super) fn new(
        machine: MachineConnection,
        framing: BodyFraming,
        reusable: bool,
        parked: Parked,
    ) -> LentBody {
        let left = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => Left::Nothing,
            BodyFraming::Length(n) => Left::Length(n),
            BodyFraming::Chunked => Left::Chunked(Box::default()),
            BodyFraming::UntilClose => Left::UntilClose,
        };
        let mut body = LentBody {
            machine: Some(machine),
            left,
            reusable,
            parked,
            trailers: None,
        };
        if matches!(body.left, Left::Nothing) {
            body.finish();
        }
        body
    }

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
                let data = (take > 0).then(|| take_data(buf, take));
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
            Left::UntilClose => (!buf.is_empty()).then(|| take_data(buf, buf.len())),
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
