//! Builds a replica once: picks the memory or Redis backends, wires the service, the
//! Socket.IO layer, the relay and the middleware.

use crate::audience::Audiences;
use crate::auth::Tokens;
use crate::config::{AuthMode, Config};
use crate::events::{EventBus, Feed, History, LocalBus, RedisBus};
use crate::http::{self, AppState};
use crate::livekit::{TokenIssuer, WebhookVerifier};
use crate::realtime;
use crate::service::{Identity, Service};
use crate::store::{Keys, MemoryStore, RedisStore, Store, WaitReplicas};
use crate::telemetry::metrics;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, ClientLike, ReconnectPolicy};
use fred::types::config::{Options, TlsConnector};
use socketioxide::SocketIo;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::DeadlineBody;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid REDIS_URL: {0}")]
    RedisUrl(String),
    #[error("Redis TLS: {0}")]
    RedisTls(String),
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
    #[error(transparent)]
    Setting(#[from] crate::config::InvalidSetting),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// A built replica, ready to serve.
pub struct App {
    pub router: Router,
    pub io: SocketIo,
    pub state: AppState,
    redis: Option<(Client, SubscriberClient)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn build(cfg: &Config) -> Result<Self, StartError> {
        crate::auth::install_jwt_crypto();
        let log = cfg.event_log();
        let (store, bus, redis): (Arc<dyn Store>, Arc<dyn EventBus>, _) = match &cfg.redis_url {
            None => {
                let bus = LocalBus::new(log);
                (Arc::new(MemoryStore::new(bus.clone())), Arc::new(bus), None)
            }
            Some(url) => {
                let (client, subscriber) = redis_clients(url, cfg.redis_tls_ca_file.as_deref(), cfg.redis_timeout)?;
                let keys = Keys::new(cfg.redis_prefix());
                let wait = (cfg.redis_wait_replicas > 0)
                    .then_some(WaitReplicas { replicas: cfg.redis_wait_replicas, timeout: cfg.redis_wait_timeout });
                let options = command_options(cfg.redis_timeout);
                let bus = RedisBus::new(subscriber.clone(), client.clone(), options.clone(), &keys);
                let store = RedisStore::new(client.clone(), options, keys, wait, log);
                (Arc::new(store), Arc::new(bus), Some((client, subscriber)))
            }
        };
        let tokens = TokenIssuer::new(
            cfg.livekit_api_key.clone(),
            cfg.livekit_api_secret.clone(),
            cfg.livekit_url.clone(),
            cfg.livekit_token_ttl,
        );
        let webhooks = WebhookVerifier::new(&cfg.livekit_api_key, &cfg.livekit_api_secret);
        let identity = identity(cfg);
        let audiences = identity.is_some().then(|| Arc::new(Audiences::default()));
        let feed = Arc::new(Feed::new(bus));
        let push = cfg.push.settings()?;
        let service = Arc::new(Service::new(store, feed.clone(), tokens, webhooks, cfg.timeouts(), identity, push));
        let (sio_layer, io) = realtime::layer();
        realtime::serve(&io, audiences.as_ref().map(|a| (a, service.clone())));
        let mut tasks = Vec::new();
        if let Some((client, subscriber)) = &redis {
            // Only now: the bus listens for the subscriber's first connection.
            let (a, b) = tokio::join!(connect(client), connect(subscriber));
            tasks.extend(a.into_iter().chain(b));
            tasks.push(tokio::spawn(watch_connections(client.clone(), subscriber.clone())));
        }
        tasks.extend([
            realtime::spawn_relay(&feed, io.clone(), audiences.clone()),
            tokio::spawn(realtime::count_clients(io.clone(), audiences)),
            tokio::spawn(fire_timers(service.clone())),
        ]);
        let state = AppState {
            service,
            metrics: metrics::install(),
            body_limit: cfg.body_limit,
            draining: Arc::new(AtomicBool::new(false)),
        };
        let draining = state.draining.clone();
        let request_id = HeaderName::from_static(REQUEST_ID);
        let body_timeout = cfg.body_timeout;
        // One layer stack, outermost first. Each `Router::layer` call boxes every route's
        // service and future once more, and axum's `map_request` boxes its future: a pending
        // long poll holds all of those for up to 25 s (L4b).
        let router = http::router(state.clone()).layer(
            ServiceBuilder::new()
                .map_request(drop_unsafe_request_id)
                .map_request(move |req| body_deadline(body_timeout, req))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(cors(&cfg.cors_origins)?)
                .layer(sio_layer)
                // Below the Socket.IO layer: a websocket's 101 keeps its `Connection: upgrade`.
                .map_response(move |response| http::close_when_draining(&draining, response)),
        );
        Ok(Self { router, io, state, redis, tasks })
    }

    /// Stops background work and closes Redis connections (after serving has ended).
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some((client, subscriber)) = self.redis {
            let _ = subscriber.quit().await;
            let _ = client.quit().await;
        }
    }
}

/// Builds the data and subscriber clients (see [`connect`]).
fn redis_clients(
    url: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<(Client, SubscriberClient), StartError> {
    let mut config = fred::prelude::Config::from_url(url).map_err(|e| StartError::RedisUrl(e.details().to_string()))?;
    // The first connection is made at once (see `connect`); fred's policy handles the later ones.
    config.fail_fast = true;
    if config.tls.is_some() {
        let roots = crate::config::tls_roots(ca_file).map_err(StartError::RedisTls)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::RedisTls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.tls = Some(TlsConnector::from(tls).into());
    }
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            // A write interrupted by a dropped connection is not replayed behind our back.
            c.max_command_attempts = 1;
            c.tcp.nodelay = Some(true);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            // Room for bursts before the relay sees a lag (see events::redis).
            p.broadcast_channel_capacity = 16 * 1024;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    let build_error = |e: fred::error::Error| StartError::RedisUrl(e.details().to_string());
    let client = builder.build().map_err(build_error)?;
    let subscriber = builder.build_subscriber_client().map_err(build_error)?;
    Ok((client, subscriber))
}

/// Connects a client: a first attempt before the replica uses it, then, while Redis cannot
/// be reached (a replica may start before it), more in the background with backoff (the
/// returned task); once connected, fred reconnects by its policy. fred's policy alone would
/// wait a reconnection delay before even the first attempt, and every command of that
/// moment of each start failed.
async fn connect<C: ClientLike + Clone + 'static>(client: &C) -> Option<tokio::task::JoinHandle<()>> {
    let e = client.init().await.err()?;
    tracing::warn!(error = %e, "Redis cannot be reached yet; retrying");
    let client = client.clone();
    Some(tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            if client.init().await.is_ok() {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }))
}

/// Every store and bus command: fail at once while disconnected, wait at most `timeout`.
fn command_options(timeout: Duration) -> Options {
    Options { fail_fast: true, timeout: Some(timeout), max_attempts: Some(1), ..Default::default() }
}

/// `AUTH=token`: the token keys and the event history's bounds.
fn identity(cfg: &Config) -> Option<Identity> {
    let secret = cfg.auth_secret.as_deref().filter(|_| cfg.auth == AuthMode::Token)?;
    Some(Identity {
        tokens: Tokens::new(secret.as_bytes()),
        ttl: cfg.auth_token_ttl,
        history: History { max: cfg.event_history, ttl: cfg.event_history_ttl },
        known_users: Default::default(),
        forgotten: Default::default(),
    })
}

/// Every replica claims the due deadlines twice a second: a missed or expired call ends,
/// and an ended call or inactive room is deleted, within about half a second of its
/// deadline while any replica lives (a lease later if the replica that claimed it died).
async fn fire_timers(service: Arc<Service>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match service.fire_due().await {
            Ok(_) => failing = false,
            // Logged once per outage, not twice a second; the Redis metrics count each.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "deadlines could not be fired; retrying");
            }
            Err(_) => {}
        }
    }
}

/// Keeps the connection gauges current.
async fn watch_connections(client: Client, subscriber: SubscriberClient) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        metrics::redis_connected("data", client.is_connected());
        metrics::redis_connected("subscriber", subscriber.is_connected());
    }
}

/// A body must arrive whole within BODY_TIMEOUT, however slowly it drips.
fn body_deadline(timeout: Duration, req: axum::extract::Request) -> axum::extract::Request {
    req.map(|body| axum::body::Body::new(DeadlineBody::new(timeout, body)))
}

/// A client's `x-request-id` is echoed and logged: one longer than 128 characters or with
/// characters outside a safe set is dropped, so that a fresh one replaces it.
fn drop_unsafe_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let safe = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:+/=@".contains(c))
    };
    if req.headers().get(REQUEST_ID).is_some_and(|v| !safe(v)) {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

const REQUEST_ID: &str = "x-request-id";

/// `*` (the default) answers `Access-Control-Allow-Origin: *`, which browsers refuse for
/// credentialed requests. A list echoes the allowed origin and allows credentials, so a
/// frontend on another origin can send the load balancer's affinity cookie back
/// (`withCredentials`); methods and headers are then mirrored, as wildcards are not allowed
/// with credentials.
fn cors(origins: &[String]) -> Result<CorsLayer, StartError> {
    let layer = CorsLayer::new().expose_headers([HeaderName::from_static(REQUEST_ID), header::LINK]);
    if origins.iter().any(|o| o.trim() == "*") {
        // Headers mirrored rather than `*`: a wildcard does not cover `Authorization`.
        return Ok(layer.allow_origin(Any).allow_methods(Any).allow_headers(AllowHeaders::mirror_request()));
    }
    let list = origins
        .iter()
        .map(|o| HeaderValue::from_str(o.trim()).map_err(|_| StartError::CorsOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(layer
        .allow_origin(AllowOrigin::list(list))
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true))
}
