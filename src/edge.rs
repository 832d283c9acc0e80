//! The edge of a replica: accepts TCP connections up to a cap, serves each with hyper under
//! a header timeout and a header size limit, and stops within a bound. Past the cap a
//! connection is answered 503 at once and closed, so that a flood cannot exhaust the
//! process's file descriptors; a connection's slot is held until its socket closes, a
//! websocket's included.

use crate::telemetry::metrics;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// How much a replica takes from its clients, and how long it waits for them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; more are refused.
    pub max_connections: usize,
    /// Time to receive a request's headers, and how long a keep-alive connection may idle.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// After shutdown begins, how long in-flight requests may take before the replica exits.
    pub shutdown_grace: Duration,
}

/// The answer past the cap: written without reading anything, then the socket is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
access-control-allow-origin: *\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 122\r\n\r\n\
{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"code\":\"too_many_connections\",\"detail\":\"try again later\"}";

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish for at most `limits.shutdown_grace`.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // HTTP/1.1 only, as behind any ingress: no HTTP/2 preface sniffing per connection, and a
    // pending long poll's connection task is the size of an HTTP/1 connection alone.
    let mut builder = Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(limits.max_header_bytes);
    // Closed when shutdown begins: every connection then finishes its request and closes.
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver; `closed()` completes once all are gone.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::connection_refused();
            let _ = tcp.try_write(REFUSED);
            continue;
        };
        // Without TCP_NODELAY a small event frame waits for the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted { tcp, _slot: slot });
        let service = TowerToHyperService::new(router.clone().map_request(|req: Request<Incoming>| req.map(Body::new)));
        let (builder, mut stop, done) = (builder.clone(), stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    if tokio::time::timeout(limits.shutdown_grace, done_tx.closed()).await.is_err() {
        tracing::warn!(grace_s = limits.shutdown_grace.as_secs(), "connections still open after the grace; exiting");
    }
}

/// A TCP stream that holds its connection slot until it is dropped (after a websocket
/// upgrade, hyper hands the stream on and the slot goes with it).
struct Counted {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_problem() {
        let text = std::str::from_utf8(REFUSED).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len());
        let problem: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(503), Some("too_many_connections")));
    }
}
