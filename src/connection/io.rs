//! A connection whose writes keep a `Pace` (nginx's `send_timeout`, with the minimum
//! rate), optionally holding a slot under some limit for as long as it lives.

use super::pace::{Clock, Pace};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// A connection whose writes must keep a `Pace`: a peer that stops reading fails the
/// write that waits on it (`TimedOut`), and with it the connection. Reads pass through;
/// the policies of the protocol on top bound those.
pub struct PacedIo<I> {
    inner: I,
    clock: Clock,
    /// A slot under some limit, held for as long as the connection lives.
    _held: Option<OwnedSemaphorePermit>,
}

impl<I> PacedIo<I> {
    pub fn new(inner: I, pace: Pace) -> PacedIo<I> {
        PacedIo {
            inner,
            clock: Clock::new(pace),
            _held: None,
        }
    }

    /// The connection holds `slot` until it is dropped (wherever it goes: a pool, an
    /// upgraded tunnel).
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> PacedIo<I> {
        self._held = Some(slot);
        self
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// The connection without its pace (the slot it holds, if any, is let go).
    pub fn into_inner(self) -> I {
        self.inner
    }

    /// Paces one write-side call: `Pending` starts or continues a wait.
    fn pace<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> usize,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Ok(done)) => {
                self.clock.kept_up();
                self.clock.moved(moved(&done));
                Poll::Ready(Ok(done))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.clock.poll_wait(cx) {
                Poll::Ready(too_slow) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, too_slow)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PacedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PacedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.pace(cx, poll, |n| *n)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.pace(cx, poll, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.pace(cx, poll, |()| 0)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.pace(cx, poll, |()| 0)
    }
}
