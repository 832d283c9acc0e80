//! What every integration test stands on: a real `redis-server` per test, real replicas of
//! the app on loopback, real Socket.IO clients (the reference npm client), plain HTTP.

mod app;
mod client;
mod redis;
mod shapes;

pub use app::{API_KEY, API_SECRET, Api, TOKEN_TTL_S, TestApp, spawn_binary, wait_status};
pub use client::{Mode, SioClient};
pub use redis::RedisServer;
pub use shapes::{Shape, Shapes};

use std::time::Duration;

/// The bound on every wait for something the contract promises will happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
