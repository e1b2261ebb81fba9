//! The accept loop: HTTP/1.1 and HTTP/2 connections with the limits a public endpoint needs
//! (axum::serve has none): a deadline for request headers against slow-header (slowloris)
//! clients, an idle time-out for HTTP/2 connections without an open stream, a cap on open
//! connections so a flood cannot exhaust file descriptors, and a graceful drain that closes
//! idle connections and waits for busy ones.

use super::connection::{self, ConnectionLimits, Protocol};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most request header bytes (request line included) an HTTP/1 client may send: hyper's default
/// buffer takes about 400 KB, which every log line and echoed header would then carry.
const MAX_HTTP1_HEADER_BYTES: usize = 64 * 1024;

/// Most streams one HTTP/2 connection may have open at once (hyper's default is 200): each is
/// a request in flight, bounded by the queue anyway.
const MAX_HTTP2_STREAMS: u32 = 128;

/// Most header bytes of one HTTP/2 request (hyper's default, said here).
const MAX_HTTP2_HEADER_LIST: u32 = 16 * 1024;

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and returns once
/// every open connection has finished its requests (bound the wait with a timeout).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let builders = Arc::new(connection::Builders {
        http1: builder(Protocol::Http1, limits),
        http2: builder(Protocol::Http2, limits),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning; the queue keeps clients.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (builders, app, stop) = (builders.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            connection::serve(stream, &builders, app, limits, stop).await;
            drop(slot);
        });
    }
    let address = listener.local_addr().ok();
    drop(listener);
    // Said so that a drain that runs into --shutdown-timeout shows what it waited for.
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(
        ?address,
        open_connections = open,
        "stopped accepting connections"
    );
    // Every connection gives its slot back once its requests are answered.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

fn builder(protocol: Protocol, limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also the idle time-out of keep-alive connections (hyper starts it whenever it waits
        // for a request head).
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HTTP1_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        .max_header_list_size(MAX_HTTP2_HEADER_LIST)
        // Finds dead HTTP/2 peers (their streams would otherwise hold the connection open).
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}
