//! switchboard: the backend voice and video calling apps talk to.
//!
//! - [`domain`]: pure types (ids, names, users, calls, rooms, events)
//! - [`service`]: the use cases; validate, store, then publish
//! - [`store`]: where state lives (memory or Redis)
//! - [`events`]: how events travel between replicas (in-process or Redis pub/sub)
//! - [`realtime`]: Socket.IO and the relay, the only code that emits to sockets
//! - [`http`]: the REST API
//! - [`livekit`]: access tokens
//! - [`telemetry`]: logs and metrics
//!
//! Dependencies point one way: `http` → `service` → `store` / `events`.

pub mod app;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod livekit;
pub mod realtime;
pub mod service;
pub mod store;
pub mod telemetry;

pub use app::{App, StartError};
pub use config::Config;

use axum::serve::ListenerExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

/// Serves one replica on `listener` until `shutdown` completes, then drains: `/readyz`
/// turns 503, requests are still served for the drain period, Socket.IO clients are
/// disconnected (so they reconnect elsewhere), in-flight requests finish.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = App::build(&cfg).await?;
    let (io, draining, drain_period) = (app.io.clone(), app.state.draining.clone(), cfg.drain_period);
    let graceful = async move {
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!(drain_period_s = drain_period.as_secs(), "shutting down: draining");
        tokio::time::sleep(drain_period).await;
        io.close().await;
        tracing::info!("sockets closed; finishing in-flight requests");
    };
    // Without TCP_NODELAY a small event frame waits for the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app.router.clone()).with_graceful_shutdown(graceful).await;
    app.close().await;
    served.map_err(StartError::Io)
}
