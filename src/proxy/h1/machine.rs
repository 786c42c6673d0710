//! The fast path's connection to a machine, owned by one client connection: kept while
//! the machine lets it be reused, replaced when the client's requests go elsewhere.
//! Every failure says whether the machine may have seen the request.

use super::super::upstream::{UPSTREAM_CONNECT_TIMEOUT, UpstreamError};
use super::READ_BUFFER;
use super::chunked::ChunkedScanner;
use super::response::{self, BodyFraming, EdgeFacts, ResponseHead};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head larger than this fails the exchange.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How an exchange failed.
#[derive(Debug)]
pub enum Exchange {
    /// No connection: the machine never saw the request, another may take it.
    Unsent(UpstreamError),
    /// The machine may have seen the request; the client has heard nothing yet.
    Sent(UpstreamError),
    /// The client was already being answered (or went away): only closing is left.
    Answering,
}

fn sent(error: &dyn std::error::Error) -> Exchange {
    Exchange::Sent(UpstreamError::exchange(error))
}

fn sent_because(why: &str) -> Exchange {
    Exchange::Sent(UpstreamError::Exchange(why.to_string()))
}

pub struct MachineConnection {
    addr: SocketAddr,
    stream: TcpStream,
    /// The machine's bytes not yet passed on.
    buf: BytesMut,
    /// Carried an earlier request (so it may have been closed by the machine since).
    reused: bool,
}

impl MachineConnection {
    /// The cached connection when it goes to `addr` and is still open, else a new one.
    pub async fn reuse_or_connect(
        cached: Option<MachineConnection>,
        addr: SocketAddr,
    ) -> Result<MachineConnection, Exchange> {
        match cached {
            Some(mut cached) if cached.addr == addr && cached.is_open() => {
                cached.reused = true;
                Ok(cached)
            }
            _ => MachineConnection::connect(addr).await,
        }
    }

    /// Open, with nothing unasked-for to read: a read would block.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn connect(addr: SocketAddr) -> Result<MachineConnection, Exchange> {
        let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr));
        let stream = match connect.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Exchange::Unsent(UpstreamError::connect(&e))),
            Err(_) => {
                let error = UpstreamError::Connect("connect timed out".into());
                return Err(Exchange::Unsent(error));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(MachineConnection {
            addr,
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER),
            reused: false,
        })
    }

    /// Sends the request (its head: requests with a body go to hyper's path), then
    /// passes the answer on. A reused
    /// connection the machine closed meanwhile is replaced once, when the request may
    /// be sent again.
    pub async fn round_trip<C>(
        &mut self,
        head: &[u8],
        resendable: bool,
        client: &mut C,
        facts: &EdgeFacts<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ResponseHead, Exchange>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let first = self.send(head).await;
        let first = match first {
            Ok(()) => self.answer_head(facts, out).await,
            Err(e) => Err(e),
        };
        let head_answer = match first {
            Err(Exchange::Sent(_)) if self.reused && resendable => {
                *self = MachineConnection::connect(self.addr).await?;
                out.clear();
                self.send(head).await?;
                self.answer_head(facts, out).await?
            }
            other => other?,
        };
        self.pass_body(head_answer, out, client).await
    }

    async fn send(&mut self, head: &[u8]) -> Result<(), Exchange> {
        self.stream.write_all(head).await.map_err(|e| sent(&e))
    }

    /// Reads the final response head; its rewritten form is put in `out`.
    async fn answer_head(
        &mut self,
        facts: &EdgeFacts<'_>,
        out: &mut Vec<u8>,
    ) -> Result<ResponseHead, Exchange> {
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
            self.buf.reserve(READ_BUFFER);
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| sent(&e))?;
            if read == 0 {
                return Err(sent_because(
                    "the machine closed the connection before answering",
                ));
            }
        }
    }

    /// Passes the head in `out` and the body, as framed, to the client.
    async fn pass_body<C>(
        &mut self,
        mut head: ResponseHead,
        out: &mut Vec<u8>,
        client: &mut C,
    ) -> Result<ResponseHead, Exchange>
    where
        C: AsyncWrite + Unpin,
    {
        match head.framing {
            BodyFraming::Empty => write(client, out).await?,
            BodyFraming::Length(n) => self.pass_length(n, out, client).await?,
            BodyFraming::Chunked => self.pass_chunked(out, client).await?,
            BodyFraming::UntilClose => self.pass_until_close(out, client).await?,
        }
        client.flush().await.map_err(|_| Exchange::Answering)?;
        // Bytes after the response were never asked for: the connection is not trusted.
        head.reusable &= self.buf.is_empty();
        Ok(head)
    }

    async fn pass_length<C>(
        &mut self,
        mut left: u64,
        out: &mut Vec<u8>,
        client: &mut C,
    ) -> Result<(), Exchange>
    where
        C: AsyncWrite + Unpin,
    {
        let first = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        out.extend_from_slice(&self.buf[..first]);
        self.buf.advance(first);
        left -= first as u64;
        write(client, out).await?;
        while left > 0 {
            let chunk = self.read_more().await?;
            let take = chunk.min(usize::try_from(left).unwrap_or(usize::MAX));
            write(client, &self.buf[..take]).await?;
            self.buf.advance(take);
            left -= take as u64;
        }
        Ok(())
    }

    async fn pass_chunked<C>(&mut self, out: &mut Vec<u8>, client: &mut C) -> Result<(), Exchange>
    where
        C: AsyncWrite + Unpin,
    {
        let mut scanner = ChunkedScanner::default();
        let end = scanner.scan(&self.buf).map_err(|_| Exchange::Answering)?;
        let first = end.unwrap_or(self.buf.len());
        out.extend_from_slice(&self.buf[..first]);
        self.buf.advance(first);
        write(client, out).await?;
        let mut done = end.is_some();
        while !done {
            self.read_more().await?;
            let end = scanner.scan(&self.buf).map_err(|_| Exchange::Answering)?;
            let take = end.unwrap_or(self.buf.len());
            write(client, &self.buf[..take]).await?;
            self.buf.advance(take);
            done = end.is_some();
        }
        Ok(())
    }

    async fn pass_until_close<C>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut C,
    ) -> Result<(), Exchange>
    where
        C: AsyncWrite + Unpin,
    {
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        write(client, out).await?;
        loop {
            self.buf.reserve(READ_BUFFER);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    write(client, &self.buf).await?;
                    self.buf.clear();
                }
                Err(_) => return Err(Exchange::Answering),
            }
        }
    }

    /// Reads more of the body into the (empty) buffer; the machine's end or an error
    /// here cuts a response the client is already receiving.
    async fn read_more(&mut self) -> Result<usize, Exchange> {
        self.buf.reserve(READ_BUFFER);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(Exchange::Answering),
            Ok(_) => Ok(self.buf.len()),
        }
    }
}

async fn write<C: AsyncWrite + Unpin>(client: &mut C, bytes: &[u8]) -> Result<(), Exchange> {
    client
        .write_all(bytes)
        .await
        .map_err(|_| Exchange::Answering)
}
