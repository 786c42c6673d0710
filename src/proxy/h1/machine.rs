//! The fast path's connection to a machine, owned by one client connection: kept while
//! the machine lets it be reused, replaced when the client's requests go elsewhere (or
//! lent to one HTTP/2 stream: `lent`). Like every connection to a machine it holds a
//! slot of the budget and its writes are paced; the machine's answer head, and each
//! next part of its body, must come within the read timeout (timed here for the fast
//! path, by the caller for a lent one). Every failure says whether the machine may
//! have seen the request.

use super::super::upstream::{Budget, MachineIo, UpstreamError, connect_tcp};
use super::READ_BUFFER;
use super::chunked::ChunkedScanner;
use super::parked::Parked;
use super::response::{self, BodyFraming, EdgeFacts, ResponseHead};
use crate::connection::{MachinePolicy, WaitTimer};
use bytes::{Buf, Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A response head larger than this fails the exchange.
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// How long the machine may keep a client waiting before the edge watches whether the
/// client is still there (hyper's path notices a client that hangs up at once).
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(10);
/// What a client may send ahead (pipelined) while its answer is on its way; beyond it
/// the client is no longer watched until the answer is done.
const MAX_PIPELINED: usize = 64 * 1024;

/// The machine a request goes to, and the limits its connection lives under.
pub struct Destination<'a> {
    pub addr: SocketAddr,
    pub budget: &'a Budget,
    pub parked: &'a Parked,
    pub policy: MachinePolicy,
}

/// The client an answer goes to: its connection, its buffer of what it sent and the
/// edge has not used yet, and its connection's timers for the waits for an answer.
pub struct Client<'a, C> {
    pub io: &'a mut C,
    pub pipelined: &'a mut BytesMut,
    pub waits: &'a mut AnswerWaits,
}

/// A client connection's timers for the waits for its machine's answers: until the
/// client is watched too, and until the machine is too slow.
pub struct AnswerWaits {
    quiet: WaitTimer,
    answer: WaitTimer,
}

impl AnswerWaits {
    pub fn new() -> AnswerWaits {
        AnswerWaits {
            quiet: WaitTimer::unset(),
            answer: WaitTimer::unset(),
        }
    }
}

/// Why a wait for the machine ended without its bytes.
enum Stalled {
    Machine(std::io::Error),
    /// Nothing within the read timeout.
    TooSlow,
    /// The client hung up (or failed) while it waited.
    ClientGone,
}

/// How an exchange failed.
#[derive(Debug)]
pub enum Exchange {
    /// No connection: the machine never saw the request, another may take it.
    Unsent(UpstreamError),
    /// The machine may have seen the request; the client has heard nothing yet.
    Sent(UpstreamError),
    /// As `Sent`, but the machine closed or reset the connection before a byte of an
    /// answer: on a reused connection it had most likely closed it while idle, the
    /// request unread, so an idempotent request may go again on a new connection.
    Dropped(UpstreamError),
    /// The client was already being answered (or went away): only closing is left.
    Answering,
}

impl Exchange {
    /// The failure as it stands when the request is not sent again.
    pub fn settled(self) -> Exchange {
        match self {
            Exchange::Dropped(error) => Exchange::Sent(error),
            other => other,
        }
    }
}

/// The connection ended before a byte of the answer: `error` (a reset, a broken pipe)
/// or, with none, the machine's end of the stream. Any other error is `sent`.
pub(super) fn dropped(error: Option<&std::io::Error>) -> Exchange {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match error {
        None => Exchange::Dropped(UpstreamError::Exchange(
            "the machine closed the connection before answering".into(),
        )),
        Some(e)
            if matches!(
                e.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            ) =>
        {
            Exchange::Dropped(UpstreamError::exchange(e))
        }
        Some(e) => sent(e),
    }
}

/// How a wait for the answer's head ended without it: a read's `error`, or (`None`) the
/// machine's end of the stream; `dropped` while nothing of an answer had come.
pub(super) fn head_cut(error: Option<&std::io::Error>, answered_any: bool) -> Exchange {
    match (error, answered_any) {
        (error, false) => dropped(error),
        (Some(error), true) => sent(error),
        (None, true) => sent_because("the machine closed the connection before answering"),
    }
}

pub(super) fn sent(error: &(dyn std::error::Error + 'static)) -> Exchange {
    Exchange::Sent(UpstreamError::exchange(error))
}

pub(super) fn sent_because(why: &str) -> Exchange {
    Exchange::Sent(UpstreamError::Exchange(why.to_string()))
}

pub struct MachineConnection {
    addr: SocketAddr,
    stream: MachineIo,
    /// How long the machine may keep edgewake waiting for each part of its answer.
    read: Duration,
    /// The machine's bytes not yet passed on.
    buf: BytesMut,
    /// Carried an earlier request (so it may have been closed by the machine since).
    reused: bool,
}

impl MachineConnection {
    /// The connection a request to `to` goes over: `own` (the client connection's)
    /// when it goes there and is still open, else one another client connection parked
    /// there, else a new one. An `own` going elsewhere is parked for others; a closed
    /// one is dropped first, so its budget slot is free for the new one.
    pub async fn for_destination(
        own: Option<MachineConnection>,
        to: &Destination<'_>,
    ) -> Result<MachineConnection, Exchange> {
        match MachineConnection::reusable(own, to) {
            Some(cached) => Ok(cached),
            // Boxed: most requests reuse a connection, and a future with room for the
            // connect is copied whole wherever the request's future is built.
            None => Box::pin(MachineConnection::connect(to.addr, to.budget, to.policy)).await,
        }
    }

    /// `own` or a parked connection to `to`, if one is open (see `for_destination`).
    /// Not async, so the request's future holds no room for a connection it reuses.
    fn reusable(own: Option<MachineConnection>, to: &Destination<'_>) -> Option<MachineConnection> {
        let own = match own {
            Some(own) if own.addr == to.addr => Some(own).filter(MachineConnection::is_open),
            Some(other) => {
                to.parked.park(other);
                None
            }
            None => None,
        };
        let mut cached = own.or_else(|| to.parked.take(to.addr))?;
        cached.reused = true;
        cached.read = to.policy.read.timeout;
        Some(cached)
    }

    /// The machine's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open, with nothing unasked-for to read: a read would block.
    pub fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.get_ref().try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// A new connection to `addr`, under the budget.
    pub async fn connect(
        addr: SocketAddr,
        budget: &Budget,
        policy: MachinePolicy,
    ) -> Result<MachineConnection, Exchange> {
        let stream = connect_tcp(addr, budget, policy.send)
            .await
            .map_err(Exchange::Unsent)?;
        Ok(MachineConnection {
            addr,
            stream,
            read: policy.read.timeout,
            buf: BytesMut::with_capacity(READ_BUFFER),
            reused: false,
        })
    }

    /// Reads what the machine sends next into `buf`, by `deadline` (0: it closed the
    /// connection). A client that hangs up meanwhile ends the wait: no one is left to
    /// answer, and the machine's request is let go as on hyper's path. The client is
    /// watched only once the machine has kept it waiting `WATCH_CLIENT_AFTER`, so a
    /// quick answer costs no read of the client; what a pipelining client sends
    /// meanwhile is kept for after this answer. `now` is when the wait begins (the
    /// caller has just read the clock).
    async fn read_watching<C>(
        &mut self,
        now: Instant,
        deadline: Instant,
        client: &mut Client<'_, C>,
    ) -> Result<usize, Stalled>
    where
        C: AsyncRead + Unpin,
    {
        self.buf.reserve(READ_BUFFER);
        let quiet_until = (now + WATCH_CLIENT_AFTER).min(deadline);
        client.waits.quiet.set(quiet_until);
        tokio::select! {
            biased;
            read = self.stream.read_buf(&mut self.buf) => return read.map_err(Stalled::Machine),
            () = client.waits.quiet.elapsed() => {}
        }
        client.waits.answer.set(deadline);
        loop {
            let watch = client.pipelined.len() < MAX_PIPELINED;
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => return read.map_err(Stalled::Machine),
                () = client.waits.answer.elapsed() => return Err(Stalled::TooSlow),
                sent = client.io.read_buf(client.pipelined), if watch => {
                    if !matches!(sent, Ok(n) if n > 0) {
                        return Err(Stalled::ClientGone);
                    }
                }
            }
        }
    }

    /// Whether this connection carried an earlier request (so the machine may have
    /// closed it since, and a request that failed on it may be sent again on a new one).
    pub fn was_reused(&self) -> bool {
        self.reused
    }

    /// Sends the request (its head: requests with a body go to hyper's path), then
    /// passes the answer on.
    pub async fn round_trip<C>(
        &mut self,
        head: &[u8],
        client: &mut Client<'_, C>,
        facts: &EdgeFacts<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ResponseHead, Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        self.send(head).await?;
        let answer = self.answer_head(facts, out, client).await?;
        self.pass_body(answer, out, client).await
    }

    pub(super) async fn send(&mut self, head: &[u8]) -> Result<(), Exchange> {
        self.stream
            .write_all(head)
            .await
            .map_err(|e| dropped(Some(&e)))
    }

    /// The machine's bytes read and not used yet.
    pub(super) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads what the machine sends next into the buffer (0: it closed the
    /// connection), with no timeout of its own: for an answer lent to hyper's path,
    /// whose waits are timed by its caller.
    pub(super) fn poll_fill(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.buf.reserve(READ_BUFFER);
        tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Reads the final response head; its rewritten form is put in `out`.
    async fn answer_head<C>(
        &mut self,
        facts: &EdgeFacts<'_>,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
    ) -> Result<ResponseHead, Exchange>
    where
        C: AsyncRead + Unpin,
    {
        // The clock is read once for the deadline and the first wait (most heads come
        // in one read), again only for a later wait.
        let start = Instant::now();
        let deadline = start + self.read;
        let mut now = Some(start);
        let mut answered_any = !self.buf.is_empty();
        loop {
            if let Some(head) =
                response::parse_response(&self.buf, facts, out).map_err(|e| sent(&e))?
            {
                self.buf.advance(head.len);
                if head.status >= 200 {
                    return Ok(head);
                }
                continue;
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err(sent_because("response head too large"));
            }
            let waiting_from = now.take().unwrap_or_else(Instant::now);
            let read = match self.read_watching(waiting_from, deadline, client).await {
                Ok(read) => read,
                Err(Stalled::Machine(e)) => return Err(head_cut(Some(&e), answered_any)),
                Err(Stalled::ClientGone) => return Err(Exchange::Answering),
                Err(Stalled::TooSlow) => {
                    let read = self.read;
                    let error = UpstreamError::Timeout(format!("no answer within {read:?}"));
                    return Err(Exchange::Sent(error));
                }
            };
            if read == 0 {
                return Err(head_cut(None, answered_any));
            }
            answered_any = true;
        }
    }

    /// Passes the head in `out` and the body, as framed, to the client.
    async fn pass_body<C>(
        &mut self,
        mut head: ResponseHead,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
    ) -> Result<ResponseHead, Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        match head.framing {
            BodyFraming::Empty => write(client.io, out).await?,
            BodyFraming::Length(n) => self.pass_length(n, out, client).await?,
            BodyFraming::Chunked => self.pass_chunked(out, client).await?,
            BodyFraming::UntilClose => self.pass_until_close(out, client).await?,
        }
        client.io.flush().await.map_err(|_| Exchange::Answering)?;
        // Bytes after the response were never asked for: the connection is not trusted.
        head.reusable &= self.buf.is_empty();
        Ok(head)
    }

    async fn pass_length<C>(
        &mut self,
        mut left: u64,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
    ) -> Result<(), Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        self.pass_framed(out, client, |buf| {
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            left -= take as u64;
            Ok((take, left == 0))
        })
        .await
    }

    async fn pass_chunked<C>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
    ) -> Result<(), Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let mut scanner = ChunkedScanner::default();
        self.pass_framed(out, client, |buf| {
            let end = scanner.scan(buf).map_err(|_| Exchange::Answering)?;
            Ok((end.unwrap_or(buf.len()), end.is_some()))
        })
        .await
    }

    /// Passes a body whose end its framing finds: `measure` says, of the bytes read so
    /// far, how many belong to the body and whether they end it. The first go out with
    /// the head in `out`, in one write.
    async fn pass_framed<C>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
        mut measure: impl FnMut(&[u8]) -> Result<(usize, bool), Exchange>,
    ) -> Result<(), Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let (first, mut done) = measure(&self.buf)?;
        out.extend_from_slice(&self.buf[..first]);
        self.buf.advance(first);
        write(client.io, out).await?;
        while !done {
            self.read_more(client).await?;
            let (take, end) = measure(&self.buf)?;
            write(client.io, &self.buf[..take]).await?;
            self.buf.advance(take);
            done = end;
        }
        Ok(())
    }

    async fn pass_until_close<C>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut Client<'_, C>,
    ) -> Result<(), Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        write(client.io, out).await?;
        loop {
            let now = Instant::now();
            match self.read_watching(now, now + self.read, client).await {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    write(client.io, &self.buf).await?;
                    self.buf.clear();
                }
                Err(_) => return Err(Exchange::Answering),
            }
        }
    }

    /// Reads more of the body into the (empty) buffer; the machine's end, an error or
    /// a part that does not come within the read timeout cuts a response the client is
    /// already receiving.
    async fn read_more<C>(&mut self, client: &mut Client<'_, C>) -> Result<(), Exchange>
    where
        C: AsyncRead + Unpin,
    {
        let now = Instant::now();
        match self.read_watching(now, now + self.read, client).await {
            Ok(0) | Err(_) => Err(Exchange::Answering),
            Ok(_) => Ok(()),
        }
    }
}

async fn write<C: AsyncWrite + Unpin>(client: &mut C, bytes: &[u8]) -> Result<(), Exchange> {
    client
        .write_all(bytes)
        .await
        .map_err(|_| Exchange::Answering)
}

/// Data shorter than this is copied out of a connection's read buffer, not split off.
/// A split shares the buffer: while the data is still on its way to the client, the
/// next read must take a new buffer (8 KiB, past glibc's per-thread cache) instead of
/// reusing this one.
pub(super) const COPY_BELOW: usize = 4 * 1024;

/// The first `n` bytes of `buf` as data of their own, the buffer keeping the rest.
pub(super) fn take_data(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_data_is_copied_and_the_buffer_kept_for_the_next_read() {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        buf.extend_from_slice(b"hello world\nHTTP/1.1 200");
        let home = buf.as_ptr();
        let data = take_data(&mut buf, 12);
        assert_eq!(&data[..], b"hello world\n");
        assert_eq!(&buf[..], b"HTTP/1.1 200");
        buf.clear();
        // The data is still held (on its way to the client): the next read reuses
        // the same allocation all the same.
        buf.reserve(READ_BUFFER);
        assert_eq!(buf.as_ptr(), home);
        assert_eq!(&data[..], b"hello world\n");
    }

    #[test]
    fn long_data_is_split_off_without_a_copy() {
        let mut buf = BytesMut::with_capacity(2 * COPY_BELOW);
        buf.extend_from_slice(&[7; COPY_BELOW + 1]);
        let home = buf.as_ptr();
        let data = take_data(&mut buf, COPY_BELOW);
        assert_eq!(data.as_ptr(), home);
        assert_eq!(data.len(), COPY_BELOW);
        assert_eq!(&buf[..], &[7]);
    }
}
