//! One client connection: its protocol told from its first bytes within the header deadline,
//! then served by hyper until it closes, goes idle (HTTP/2: no stream open for
//! `--idle-timeout`, closed with GOAWAY) or the drain starts.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionLimits {
    /// Longest a client may take to send a request's line and headers (HTTP/1; also its
    /// keep-alive idle time) or the HTTP/2 preface.
    pub header_read_timeout: Duration,
    /// Longest an HTTP/2 (and gRPC) connection may stay open without a stream in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// The connection settings of each protocol, made once per listener.
pub(super) struct Builders {
    pub http1: auto::Builder<TokioExecutor>,
    pub http2: auto::Builder<TokioExecutor>,
}

/// How long an idle HTTP/2 connection told to go away (GOAWAY) may take to close before it is
/// dropped: a well-behaved peer closes within a round trip; one that never answers the
/// shutdown's ping must not keep its slot.
const IDLE_CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Serves one connection until it ends; returns when its slot may be reused.
pub(super) async fn serve(
    stream: TcpStream,
    builders: &Builders,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    // A client that sends nothing (or a partial HTTP/2 preface) is dropped here, and at once
    // when the drain starts: it has no request in flight.
    let sniffed = tokio::select! {
        // Bytes already there win over the drain: their request is served.
        biased;
        sniffed = sniff(stream, limits.header_read_timeout) => sniffed,
        () = stop.cancelled() => None,
    };
    let Some((protocol, io)) = sniffed else {
        return;
    };
    let streams = Streams::default();
    let idle = streams.0.subscribe();
    let builder = match protocol {
        Protocol::Http1 => &builders.http1,
        Protocol::Http2 => &builders.http2,
    };
    let service = TowerToHyperService::new(Tracked { app, streams });
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
    // HTTP/1 keep-alive connections wait for their next request head under
    // --header-read-timeout, which hyper enforces; HTTP/2 has no such deadline of its own.
    let watch_idle = protocol == Protocol::Http2;
    let idle_close = tokio::select! {
        result = connection.as_mut() => return closed(result),
        () = stop.cancelled() => false,
        () = idle_for(idle, limits.idle_timeout), if watch_idle => true,
    };
    connection.as_mut().graceful_shutdown();
    if idle_close {
        tracing::debug!(idle_timeout = ?limits.idle_timeout, "closing an idle HTTP/2 connection");
        if let Ok(result) = tokio::time::timeout(IDLE_CLOSE_GRACE, connection).await {
            closed(result);
        }
    } else {
        // The drain: in-flight requests finish (the shutdown time-out bounds the wait).
        closed(connection.await);
    }
}

fn closed(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        // Client resets, header time-outs, protocol errors: the client's business.
        tracing::debug!(error = %error, "connection closed with an error");
    }
}

/// Completes once no stream has been open for `timeout` in a row.
async fn idle_for(mut open: watch::Receiver<usize>, timeout: Duration) {
    loop {
        if *open.borrow_and_update() > 0 {
            if open.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        match tokio::time::timeout(timeout, open.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {}
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 or HTTP/2 (prior knowledge), from the first bytes, within `deadline`; the stream
/// comes back with those bytes still to be read. hyper-util's own detection waits for them
/// without a time limit, which a silent client could exploit.
async fn sniff(mut stream: TcpStream, deadline: Duration) -> Option<(Protocol, Prefixed)> {
    let detect = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut n = 0;
        loop {
            // Waits for the next bytes without spinning: a partial preface costs nothing.
            let read = stream.read(&mut buf[n..]).await.ok()?;
            if read == 0 {
                return None;
            }
            n += read;
            if buf[..n] != H2_PREFACE[..n] {
                return Some((Protocol::Http1, buf[..n].to_vec()));
            }
            if n == H2_PREFACE.len() {
                return Some((Protocol::Http2, buf.to_vec()));
            }
        }
    };
    let (protocol, prefix) = tokio::time::timeout(deadline, detect).await.ok()??;
    Some((
        protocol,
        Prefixed {
            prefix,
            read: 0,
            stream,
        },
    ))
}

/// A stream whose first bytes were read to tell its protocol: they are read again first.
struct Prefixed {
    prefix: Vec<u8>,
    read: usize,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.read);
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How many of a connection's requests are in flight, from their head to the end of their
/// response's body.
#[derive(Clone, Default)]
struct Streams(Arc<watch::Sender<usize>>);

/// One request in flight; counted until dropped.
struct OpenStream(Arc<watch::Sender<usize>>);

impl Streams {
    fn open(&self) -> OpenStream {
        self.0.send_modify(|n| *n += 1);
        OpenStream(self.0.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The app, counting each request as open until its response body is sent or dropped.
#[derive(Clone)]
struct Tracked {
    app: Router,
    streams: Streams,
}

impl tower::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<Incoming>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let open = self.streams.open();
        let answer = tower::Service::call(&mut self.app, request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Body::new(Counted { body, _open: open })))
        })
    }
}

/// A response body that holds its request's place among the open streams.
struct Counted {
    body: Body,
    _open: OpenStream,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_means_no_stream_for_the_whole_time_out() {
        let ms = Duration::from_millis;
        let streams = Streams::default();
        let idle = tokio::spawn(idle_for(streams.0.subscribe(), ms(400)));
        tokio::time::sleep(ms(200)).await;
        let open = streams.open();
        // A stream open for longer than the time-out keeps the connection.
        tokio::time::sleep(ms(800)).await;
        assert!(!idle.is_finished());
        drop(open);
        tokio::time::sleep(ms(200)).await;
        assert!(!idle.is_finished());
        tokio::time::sleep(ms(400)).await;
        assert!(idle.is_finished());
    }
}
