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
pub mod standins;

pub use app::{API_KEY, API_SECRET, AUTH_SECRET, Api, TOKEN_MODE, TOKEN_TTL_S, TestApp, spawn_binary, wait_status};
pub use client::{Mode, Poller, SioClient};
pub use proxy::Proxy;
pub use redis::{Key, RedisServer, cli, keyspace};
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

/// Asserts a problem document (RFC 9457) of `expected` status and `code`.
pub fn assert_problem(status: reqwest::StatusCode, body: &serde_json::Value, expected: u16, code: &str) {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected, "{body}");
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
}

/// A resource's `id`.
pub fn id(v: &serde_json::Value) -> &str {
    v["id"].as_str().unwrap_or_default()
}

/// Every event heard since the last call, the same on every client (events arrive in
/// commit order, so the announcement of a marker user registered through `api` closes the
/// list).
pub async fn heard_alike(api: &Api, clients: &mut [SioClient]) -> Vec<(String, serde_json::Value)> {
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    api.user(&marker).await;
    let mut lists = Vec::new();
    for client in clients {
        lists.push(
            client.events_until(|name, arg| name == "user.registered" && arg["data"]["name"] == marker.as_str()).await,
        );
    }
    for other in &lists[1..] {
        assert_eq!(other, &lists[0], "clients of different replicas heard different events");
    }
    lists.swap_remove(0)
}

/// Listens until `calls` have each ended; returns, per call, the names heard.
pub async fn until_ended(client: &mut SioClient, calls: &[String]) -> std::collections::HashMap<String, Vec<String>> {
    let mut heard: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut open = calls.len();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while open > 0 {
        assert!(tokio::time::Instant::now() < deadline, "calls still ringing: {heard:?}");
        let (name, arg) = client.next_event().await;
        let call = arg["data"]["callId"].as_str().unwrap_or_default().to_owned();
        if calls.contains(&call) {
            open -= usize::from(name == "call.ended");
            heard.entry(call).or_default().push(name);
        }
    }
    heard
}

/// One replica on the embedded store, or (`redis`) two sharing a Redis of their own under
/// `namespace`, with extra flags.
pub async fn replicas(redis: bool, namespace: &str, flags: &[&str]) -> (Vec<TestApp>, Option<RedisServer>) {
    if !redis {
        return (vec![TestApp::with_flags(None, "unused", flags).await], None);
    }
    let server = RedisServer::start();
    let a = TestApp::with_flags(Some(&server), namespace, flags).await;
    let b = TestApp::with_flags(Some(&server), namespace, flags).await;
    (vec![a, b], Some(server))
}

/// Replicas (see [`replicas`]) with a listening websocket client each; with `--auth token`
/// among the flags, requests and clients act with a server token.
pub struct Cluster {
    pub apis: Vec<Api>,
    pub clients: Vec<SioClient>,
    pub redis: Option<RedisServer>,
    pub apps: Vec<TestApp>,
}

impl Cluster {
    pub async fn start(redis: bool, namespace: &str, flags: &[&str]) -> Self {
        let (apps, redis) = replicas(redis, namespace, flags).await;
        let token_mode = flags.windows(2).any(|w| w == ["--auth", "token"]);
        let server_token = token_mode
            .then(|| switchboard::auth::Tokens::new(AUTH_SECRET.as_bytes()).server(Duration::from_secs(600)).token);
        let auth = server_token.as_ref().map(|token| serde_json::json!({ "token": token }));
        let mut clients = Vec::new();
        for app in &apps {
            clients.push(SioClient::connect_with(&app.base, Mode::Websocket, auth.clone()).await);
        }
        let apis = apps
            .iter()
            .map(|app| match &server_token {
                Some(token) => app.api.bearer(token),
                None => app.api.clone(),
            })
            .collect();
        Self { apis, clients, redis, apps }
    }
}
