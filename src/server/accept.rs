//! The accept loop: HTTP/1.1 and HTTP/2 connections with the limits a public endpoint needs
//! (axum::serve has none): a deadline for request headers against slow-header (slowloris)
//! clients, a cap on open connections so a flood cannot exhaust file descriptors, and a
//! graceful drain that closes idle keep-alive connections and waits for busy ones.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's line and headers.
    pub header_read_timeout: Duration,
    /// Most connections open at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and returns once
/// every open connection has finished its requests (bound the wait with a timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let http1 = builder(Protocol::Http1, limits);
    let http2 = builder(Protocol::Http2, limits);
    let graceful = GracefulShutdown::new();
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
        let (http1, http2, app, watcher, stop) = (
            http1.clone(),
            http2.clone(),
            app.clone(),
            graceful.watcher(),
            stop.clone(),
        );
        tokio::spawn(async move {
            // A client that sends nothing (or a partial HTTP/2 preface) is dropped here, and
            // at once when the drain starts: it has no request in flight, and hyper cannot
            // be told to close a connection it has not been given yet, so the drain would
            // otherwise wait up to --header-read-timeout for it.
            let protocol = tokio::select! {
                // Bytes already there win over the drain: their request is served.
                biased;
                protocol = sniff(&stream, limits.header_read_timeout) => protocol,
                () = stop.cancelled() => None,
            };
            if let Some(protocol) = protocol {
                let builder = if protocol == Protocol::Http1 {
                    &http1
                } else {
                    &http2
                };
                let service = TowerToHyperService::new(app);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection).await {
                    // Client resets, header time-outs, protocol errors: the client's business.
                    tracing::debug!(error = %error, "connection closed with an error");
                }
            }
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
    graceful.shutdown().await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
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
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Finds dead HTTP/2 peers (their streams would otherwise hold the connection open).
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 or HTTP/2 (prior knowledge), from the first bytes, within `deadline`. hyper-util's
/// own detection waits for them without a time limit, which a silent client could exploit.
async fn sniff(stream: &TcpStream, deadline: Duration) -> Option<Protocol> {
    let detect = async {
        let mut buf = [0u8; 24];
        loop {
            stream.readable().await.ok()?;
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some(Protocol::Http1);
            }
            if n == H2_PREFACE.len() {
                return Some(Protocol::Http2);
            }
            // Part of the HTTP/2 preface: the rest is on its way (peek does not wait for it).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(deadline, detect).await.ok().flatten()
}
