//! Replicas of the real app, in process on loopback port 0, and an HTTP client for them.

use super::{RedisServer, Shape, eventually};
use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchboard::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One running replica; shut down when dropped.
pub struct TestApp {
    pub base: String,
    pub api: Api,
    _shutdown: oneshot::Sender<()>,
}

/// The LiveKit credentials every test replica signs with.
pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-secret-that-is-long-enough";
pub const TOKEN_TTL_S: u64 = 120;
/// The `AUTH_SECRET` of replicas run with `AUTH=token`.
pub const AUTH_SECRET: &str = "a-test-auth-secret-of-at-least-32-bytes";
/// The flags of a replica with `AUTH=token`.
pub const TOKEN_MODE: [&str; 4] = ["--auth", "token", "--auth-secret", AUTH_SECRET];

impl TestApp {
    /// A replica on the embedded store.
    pub async fn memory() -> Self {
        Self::spawn(None, "unused").await
    }

    /// A replica of the cluster sharing `redis` under `namespace`.
    pub async fn redis(redis: &RedisServer, namespace: &str) -> Self {
        Self::spawn(Some(redis.url()), namespace).await
    }

    /// A replica on the Redis deployment of `shape`, under `namespace`.
    pub async fn on_shape(shape: Shape, namespace: &str) -> Self {
        Self::on_url(shape.url(), namespace).await
    }

    async fn spawn(redis_url: Option<String>, namespace: &str) -> Self {
        Self::spawn_with(redis_url, None, namespace, &[]).await
    }

    /// A replica on the embedded store (`redis` `None`) or a Redis, with extra flags.
    pub async fn with_flags(redis: Option<&RedisServer>, namespace: &str, flags: &[&str]) -> Self {
        Self::spawn_with(redis.map(RedisServer::url), None, namespace, flags).await
    }

    /// A replica on the Redis at `url` (through a [`Proxy`](super::Proxy), say), with extra flags.
    pub async fn on_url_with_flags(url: String, namespace: &str, flags: &[&str]) -> Self {
        Self::spawn_with(Some(url), None, namespace, flags).await
    }

    /// A replica on the Redis at `redis_url` (a deployment of [`Shapes::private`]).
    ///
    /// [`Shapes::private`]: super::Shapes::private
    pub async fn on_url(redis_url: (String, Option<String>), namespace: &str) -> Self {
        Self::spawn_with(Some(redis_url.0), redis_url.1, namespace, &[]).await
    }

    async fn spawn_with(redis_url: Option<String>, ca_file: Option<String>, namespace: &str, flags: &[&str]) -> Self {
        let ttl = TOKEN_TTL_S.to_string();
        let base_flags = [
            "switchboard",
            "--redis-namespace",
            namespace,
            "--livekit-url",
            "wss://livekit.test",
            "--livekit-api-key",
            API_KEY,
            "--livekit-api-secret",
            API_SECRET,
            "--livekit-token-ttl",
            &ttl,
            "--redis-timeout-ms",
            "1000",
            "--cors-origins",
            "*",
        ];
        let mut cfg = Config::try_parse_from(base_flags.iter().chain(flags)).expect("valid flags");
        // The environment must not switch a memory test to Redis.
        cfg.redis_url = redis_url;
        cfg.redis_tls_ca_file = ca_file.map(Into::into);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = switchboard::run(cfg, listener, shutdown).await {
                panic!("replica failed: {e}");
            }
        });
        let app = Self { api: Api::new(&base), base, _shutdown: tx };
        wait_status(&app.api, "/readyz", StatusCode::OK).await;
        app
    }
}

/// A thin JSON-over-HTTP client.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self::with(base, reqwest::Client::builder())
    }

    /// A client that opens a connection per request, as many separate devices would.
    pub fn unpooled(base: &str) -> Self {
        Self::with(base, reqwest::Client::builder().pool_max_idle_per_host(0))
    }

    /// A client whose every request carries `Authorization: Bearer <token>`.
    pub fn bearer(&self, token: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Self::with(&self.base, reqwest::Client::builder().default_headers(headers))
    }

    fn with(base: &str, builder: reqwest::ClientBuilder) -> Self {
        let http = builder.timeout(super::WAIT).build().expect("client");
        Self { base: base.to_owned(), http }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the replica answers");
        let status = res.status();
        let text = res.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A raw request, for bodies and headers the JSON helpers cannot send.
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Registers a user and returns its id.
    pub async fn user(&self, name: &str) -> String {
        let (status, body) = self.post("/users", serde_json::json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }
}

/// The built `switchboard` binary on a free loopback port with the given environment
/// (REDIS_URL unset unless given), its output piped; killed when dropped. Returns once
/// `/readyz` answers 200.
pub async fn spawn_binary(env: &[(&str, &str)]) -> (tokio::process::Child, Api) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env_remove("REDIS_URL")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    wait_status(&api, "/readyz", StatusCode::OK).await;
    (child, api)
}

/// Waits until `GET path` answers `status`.
pub async fn wait_status(api: &Api, path: &str, status: StatusCode) {
    eventually(&format!("{path} to answer {status}"), || async {
        api.raw(Method::GET, path).send().await.is_ok_and(|r| r.status() == status)
    })
    .await;
}

impl Api {
    /// A browser's CORS preflight for a JSON `POST` to `path` from `origin`.
    pub async fn preflight(&self, path: &str, origin: &str) -> reqwest::Response {
        self.raw(Method::OPTIONS, path)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .expect("sent")
    }

    /// The value of one series of this replica's `/metrics` (`name` or `name{labels}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let scrape = self.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
        let line = scrape.lines().find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}
