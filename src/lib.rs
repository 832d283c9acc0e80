//! switchboard: the backend voice and video calling apps talk to.
//!
//! - [`domain`]: pure types (ids, names, users, calls, rooms, events)
//! - [`service`]: the use cases; validate, store, then publish
//! - [`store`]: where state lives (memory or Redis)
//! - [`events`]: how events travel between replicas (in-process or Redis pub/sub)
//! - [`realtime`]: Socket.IO and the relay, the only code that emits to sockets
//! - [`http`]: the REST API
//! - [`auth`]: user and server tokens (`AUTH=token`)
//! - [`livekit`]: access tokens and webhooks
//! - [`push`]: waking devices (APNs, FCM, Web Push): settings and registration rules
//! - [`telemetry`]: logs and metrics
//!
//! Dependencies point one way: `http` → `service` → `store` / `events`.

pub mod app;
pub mod audience;
pub mod auth;
pub mod config;
pub mod domain;
pub mod edge;
pub mod events;
pub mod http;
pub mod livekit;
pub mod push;
pub mod realtime;
pub mod service;
pub mod store;
pub mod telemetry;

pub use app::{App, StartError};
pub use config::Config;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;

/// The ops port's own edge: a few probes and scrapers at a time.
const OPS_LIMITS: edge::Limits = edge::Limits {
    max_connections: 64,
    header_timeout: Duration::from_secs(5),
    max_header_bytes: 8192,
    shutdown_grace: Duration::from_secs(1),
};

/// Serves one replica on `listener` (and the ops port, when configured) until `shutdown`
/// completes, then drains: `/readyz` turns 503, requests are still served for the drain
/// period, Socket.IO clients are disconnected (so they reconnect elsewhere), in-flight
/// requests finish within the shutdown grace.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = App::build(&cfg).await?;
    let ops = match cfg.ops_addr() {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops = ops.map(|listener| {
        let stopped = async {
            let _ = ops_stopped.await;
        };
        tokio::spawn(edge::serve(listener, http::ops_router(app.state.clone()), OPS_LIMITS, stopped))
    });
    let (io, draining, drain_period) = (app.io.clone(), app.state.draining.clone(), cfg.drain_period);
    let graceful = async move {
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!(drain_period_s = drain_period.as_secs(), "shutting down: draining");
        tokio::time::sleep(drain_period).await;
        io.close().await;
        tracing::info!("sockets closed; finishing in-flight requests");
    };
    edge::serve(listener, app.router.clone(), cfg.limits(), graceful).await;
    drop(ops_stop);
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    app.close().await;
    Ok(())
}
