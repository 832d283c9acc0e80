//! What every integration test stands on: a real `redis-server` per test, real replicas of
//! the app on loopback, real Socket.IO clients (the reference npm client), plain HTTP.

/// Runs each test function `$test(Fixture)` of the calling module twice: on the embedded
/// store and on Redis, with extra replica flags; the module defines `Fixture::new(Backend,
/// flags)` and `Backend::{Memory, Redis}`.
macro_rules! on_both_stores {
    ($flags:expr; $($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $test() { super::$test(super::Fixture::new(super::Backend::Memory, $flags).await).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $test() { super::$test(super::Fixture::new(super::Backend::Redis, $flags).await).await })*
        }
    };
}

mod app;
mod client;
pub mod load;
mod proxy;
mod redis;
mod shapes;

pub use app::{API_KEY, API_SECRET, AUTH_SECRET, Api, TOKEN_MODE, TOKEN_TTL_S, TestApp, spawn_binary, wait_status};
pub use client::{Mode, Poller, SioClient};
pub use proxy::Proxy;
pub use redis::RedisServer;
pub use shapes::{Shape, Shapes};

use std::time::Duration;

/// Signs a webhook body exactly as LiveKit does: a token of the API key whose `sha256`
/// claim is the base64 SHA-256 of the body.
pub fn sign_webhook(body: &str, secret: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()));
    livekit_api::access_token::AccessToken::with_api_key(API_KEY, secret).with_sha256(&hash).to_jwt().expect("signs")
}

/// The bound on every wait for something the contract promises will happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(WAIT, what, check).await;
}

/// As [`eventually`], for what a longer timeout of the system under test governs (a Redis
/// failover's detection and vote).
pub async fn eventually_within<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
