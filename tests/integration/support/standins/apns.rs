//! The APNs stand-in: `POST /3/device/{token}` over HTTP/2 only, as h2c with prior knowledge
//! ([`Apns::start`]) or over TLS with ALPN `h2` and a throw-away CA ([`Apns::start_tls`]).
//!
//! Like APNs it checks the provider token (`authorization: bearer <JWT>`: ES256 with the key's
//! public half, header `kid`, claims `iss` and `iat`), the path, the `apns-*` headers and the
//! payload size, and answers refusals with APNs' status and `{"reason"}`. A request that
//! passes is answered from the script of its device token (default: 200 with `apns-id`).

use super::{
    Action, Body, CLOCK_SKEW_S, Conn, Log, Protocol, Script, Server, TestCa, bind, credentials, es256_key, header,
    p256_public_key, perform, read_body, respond, respond_json, seconds, serve, unix_now, unix_now_ms, verify_jwt,
};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, Version};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A provider token older than this is refused with `ExpiredProviderToken`.
const TOKEN_LIFETIME_S: u64 = 3600;
/// APNs' payload limits: VoIP pushes and every other type.
const VOIP_PAYLOAD_LIMIT: usize = 5120;
const PAYLOAD_LIMIT: usize = 4096;
const PUSH_TYPES: &[&str] =
    &["alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"];

/// What the stand-in accepts as a provider token.
#[derive(Clone, Debug)]
pub struct ApnsConfig {
    key: p256::PublicKey,
    key_id: String,
    team_id: String,
    topics: Option<Vec<String>>,
}

impl ApnsConfig {
    /// Tokens signed by `key_pem` (a `.p8`, or the public key in PEM) with header `kid` =
    /// `key_id` and claim `iss` = `team_id`.
    pub fn new(key_pem: &str, key_id: &str, team_id: &str) -> Self {
        Self { key: p256_public_key(key_pem), key_id: key_id.to_owned(), team_id: team_id.to_owned(), topics: None }
    }

    /// As [`new`](Self::new), the key read from a file (e.g. `tests/fixtures/push/apns.p8`).
    pub fn from_key_file(path: impl AsRef<Path>, key_id: &str, team_id: &str) -> Self {
        let pem = std::fs::read_to_string(path.as_ref()).expect("reads the APNs key file");
        Self::new(&pem, key_id, team_id)
    }

    /// Only these bundle ids (and each with `.voip`) may be an `apns-topic`; any other is
    /// answered 400 `TopicDisallowed`. Without this, any topic is accepted.
    pub fn topics(mut self, topics: &[&str]) -> Self {
        self.topics = Some(topics.iter().map(|t| (*t).to_owned()).collect());
        self
    }
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct ApnsRequest {
    /// When the request's headers arrived.
    pub at: Instant,
    pub time: SystemTime,
    /// The connection, numbered from 1 per stand-in.
    pub conn: u64,
    /// The protocol ALPN negotiated (TLS only).
    pub alpn: Option<String>,
    pub version: Version,
    pub method: String,
    pub path: String,
    /// The device token from the path.
    pub device_token: String,
    pub headers: HeaderMap,
    pub push_type: Option<String>,
    pub topic: Option<String>,
    pub priority: Option<String>,
    pub expiration: Option<String>,
    pub collapse_id: Option<String>,
    /// The `apns-id` the request carried.
    pub apns_id: Option<String>,
    /// The provider token as sent, and its `iat`, `kid` and `iss` (also when refused).
    pub provider_token: Option<String>,
    pub iat: Option<u64>,
    pub kid: Option<String>,
    pub iss: Option<String>,
    pub body: Vec<u8>,
    /// The body parsed as JSON, when it is JSON.
    pub payload: Option<Value>,
    /// The status answered; `None` when the reply hung, disconnected or sent GOAWAY.
    pub status: Option<u16>,
    /// The `reason` answered, if any.
    pub reason: Option<String>,
    /// Why the stand-in refused the request itself (before its script), if it did.
    pub refused: Option<String>,
}

/// A scripted answer. `Reply::status(429).reason("TooManyRequests").retry_after(1)`.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    reason: Option<String>,
    timestamp_ms: Option<u64>,
    retry_after: Option<String>,
    delay: Option<Duration>,
    action: Action,
}

impl Reply {
    /// 200, empty body, `apns-id` echoed.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// `status` with `{"reason"}` (a default reason per status unless [`reason`](Self::reason)
    /// is given; 410 also carries a `timestamp`, now unless [`timestamp`](Self::timestamp)).
    pub fn status(status: u16) -> Self {
        Self { status, reason: None, timestamp_ms: None, retry_after: None, delay: None, action: Action::Respond }
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// The 410 body's `timestamp`, in milliseconds since the Unix epoch.
    pub fn timestamp(mut self, ms: u64) -> Self {
        self.timestamp_ms = Some(ms);
        self
    }

    /// A `retry-after` header of `seconds`.
    pub fn retry_after(self, seconds: u64) -> Self {
        self.retry_after_raw(&seconds.to_string())
    }

    /// A `retry-after` header with this exact value (e.g. an HTTP date).
    pub fn retry_after_raw(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    /// Answers (or hangs, disconnects) only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// 410 `Unregistered`, the token dead since `timestamp_ms`.
    pub fn unregistered(timestamp_ms: u64) -> Self {
        Self::status(410).reason("Unregistered").timestamp(timestamp_ms)
    }

    pub fn bad_device_token() -> Self {
        Self::status(400).reason("BadDeviceToken")
    }

    pub fn device_token_not_for_topic() -> Self {
        Self::status(400).reason("DeviceTokenNotForTopic")
    }

    pub fn too_many_requests() -> Self {
        Self::status(429).reason("TooManyRequests")
    }

    pub fn expired_provider_token() -> Self {
        Self::status(403).reason("ExpiredProviderToken")
    }

    pub fn internal_server_error() -> Self {
        Self::status(500).reason("InternalServerError")
    }

    pub fn service_unavailable() -> Self {
        Self::status(503).reason("ServiceUnavailable")
    }

    /// Never answers.
    pub fn hang() -> Self {
        Self { action: Action::Hang, ..Self::ok() }
    }

    /// Closes the connection without answering.
    pub fn disconnect() -> Self {
        Self { action: Action::Disconnect, ..Self::ok() }
    }

    /// Sends GOAWAY and closes the connection without answering.
    pub fn goaway() -> Self {
        Self { action: Action::GoAway, ..Self::ok() }
    }

    fn reason_text(&self) -> Option<String> {
        if self.status == 200 {
            return None;
        }
        let default = match self.status {
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "BadPath",
            405 => "MethodNotAllowed",
            410 => "Unregistered",
            413 => "PayloadTooLarge",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "InternalServerError",
        };
        Some(self.reason.clone().unwrap_or_else(|| default.to_owned()))
    }

    fn response(&self, apns_id: &str) -> Response<Body> {
        let mut headers = vec![("apns-id", apns_id.to_owned())];
        if let Some(value) = &self.retry_after {
            headers.push(("retry-after", value.clone()));
        }
        let Some(reason) = self.reason_text() else { return respond(self.status, &headers, "") };
        let mut body = json!({ "reason": reason });
        if self.status == 410 {
            body["timestamp"] = json!(self.timestamp_ms.unwrap_or_else(unix_now_ms));
        }
        respond_json(self.status, headers, &body)
    }
}

struct State {
    config: ApnsConfig,
    verifying_key: jsonwebtoken::DecodingKey,
    script: Script<Reply>,
    log: Log<ApnsRequest>,
}

/// A running APNs stand-in; dropping it stops it.
pub struct Apns {
    state: Arc<State>,
    server: Server,
    ca: Option<TestCa>,
}

impl Apns {
    /// HTTP/2 cleartext with prior knowledge (`http://`), as `APNS_URL` allows for stand-ins.
    pub async fn start(config: ApnsConfig) -> Self {
        Self::start_with(config, None).await
    }

    /// HTTP/2 over TLS (ALPN `h2` only), with a certificate for `127.0.0.1` and `localhost`
    /// from a CA made for this stand-in: pass [`ca_file`](Self::ca_file) as `PUSH_CA_FILE`.
    pub async fn start_tls(config: ApnsConfig) -> Self {
        Self::start_with(config, Some(TestCa::new(&[b"h2"]))).await
    }

    async fn start_with(config: ApnsConfig, ca: Option<TestCa>) -> Self {
        let verifying_key = es256_key(&config.key);
        let state = Arc::new(State { config, verifying_key, script: Script::new(Reply::ok()), log: Log::default() });
        let handler_state = state.clone();
        let acceptor = ca.as_ref().map(|ca| ca.acceptor.clone());
        let server = serve(bind().await, Protocol::Http2Only, acceptor, move |request, conn| {
            let state = handler_state.clone();
            async move { handle(&state, request, conn).await }
        });
        Self { state, server, ca }
    }

    /// `http://127.0.0.1:port`, or `https://…` for [`start_tls`](Self::start_tls): the
    /// value for `APNS_URL` / `APNS_SANDBOX_URL`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.server.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// The CA's PEM file (TLS only), for `PUSH_CA_FILE`.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(TestCa::path)
    }

    /// The CA certificate in PEM (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.pem.as_str())
    }

    /// Answers `device_token`'s next requests with `replies`, in order (appended to any still
    /// pending), then with the default.
    pub fn respond(&self, device_token: &str, replies: Vec<Reply>) {
        self.state.script.push(&device_token.to_ascii_lowercase(), replies);
    }

    /// What every request without a scripted reply gets (initially [`Reply::ok`]).
    pub fn set_default(&self, reply: Reply) {
        self.state.script.set_default(reply);
    }

    /// Scripted replies for `device_token` not yet used.
    pub fn pending(&self, device_token: &str) -> usize {
        self.state.script.pending(&device_token.to_ascii_lowercase())
    }

    /// Every request so far, refused ones included.
    pub fn log(&self) -> &Log<ApnsRequest> {
        &self.state.log
    }

    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.state.log.all()
    }

    /// Waits (at most `bound`) for `count` requests in all; returns all of them.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<ApnsRequest> {
        self.state.log.wait_for(count, bound).await
    }

    /// The distinct provider tokens seen, in order of first use.
    pub fn provider_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = Vec::new();
        for token in self.state.log.all().into_iter().filter_map(|r| r.provider_token) {
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        tokens
    }
}

async fn handle(state: &State, request: Request<Incoming>, conn: Conn) -> Response<Body> {
    let (at, time) = (Instant::now(), SystemTime::now());
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let device_token = path.strip_prefix("/3/device/").unwrap_or_default().to_owned();
    let get = |name: &str| header(&parts.headers, name);
    let mut record = ApnsRequest {
        at,
        time,
        conn: conn.id,
        alpn: conn.alpn.clone(),
        version: parts.version,
        method: parts.method.to_string(),
        path: path.clone(),
        device_token: device_token.clone(),
        headers: parts.headers.clone(),
        push_type: get("apns-push-type"),
        topic: get("apns-topic"),
        priority: get("apns-priority"),
        expiration: get("apns-expiration"),
        collapse_id: get("apns-collapse-id"),
        apns_id: get("apns-id"),
        provider_token: credentials(&parts.headers, "bearer"),
        iat: None,
        kid: None,
        iss: None,
        body: Vec::new(),
        payload: None,
        status: None,
        reason: None,
        refused: None,
    };
    let body = read_body(body).await;
    record.body = body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    record.payload = serde_json::from_slice(&record.body).ok();
    let apns_id = record.apns_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let reply = match check(state, &mut record, body.is_none()) {
        Err((status, reason, why)) => {
            record.refused = Some(why);
            Reply::status(status).reason(reason)
        }
        Ok(()) => state.script.next(&device_token.to_ascii_lowercase()),
    };
    if reply.action == Action::Respond {
        record.status = Some(reply.status);
        record.reason = reply.reason_text();
    }
    state.log.push(record);
    perform(reply.action, reply.delay, &conn, reply.response(&apns_id)).await
}

type Refusal = (u16, &'static str, String);

fn refuse<T>(status: u16, reason: &'static str, why: impl Into<String>) -> Result<T, Refusal> {
    Err((status, reason, why.into()))
}

/// APNs' own checks, in the order it answers them.
fn check(state: &State, record: &mut ApnsRequest, too_large: bool) -> Result<(), Refusal> {
    if !record.path.starts_with("/3/device/") {
        return refuse(404, "BadPath", format!("path {}", record.path));
    }
    if record.method != "POST" {
        return refuse(405, "MethodNotAllowed", format!("method {}", record.method));
    }
    check_provider_token(state, record)?;
    let token = &record.device_token;
    if token.is_empty() || !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refuse(400, "BadDeviceToken", format!("device token {token:?} is not hexadecimal"));
    }
    let push_type = record.push_type.as_deref();
    if let Some(kind) = push_type.filter(|t| !PUSH_TYPES.contains(t)) {
        return refuse(400, "InvalidPushType", format!("apns-push-type {kind:?}"));
    }
    let Some(topic) = record.topic.as_deref() else {
        return refuse(400, "MissingTopic", "no apns-topic (required with token authentication)");
    };
    if let Some(topics) = &state.config.topics {
        let bundle = topic.strip_suffix(".voip").unwrap_or(topic);
        if !topics.iter().any(|t| t == bundle) {
            return refuse(400, "TopicDisallowed", format!("apns-topic {topic:?} is not one of {topics:?}"));
        }
    }
    if let Some(priority) = record.priority.as_deref().filter(|p| !["10", "5", "1"].contains(p)) {
        return refuse(400, "BadPriority", format!("apns-priority {priority:?}"));
    }
    if let Some(expiration) = record.expiration.as_deref().filter(|e| e.parse::<u64>().is_err()) {
        return refuse(400, "BadExpirationDate", format!("apns-expiration {expiration:?}"));
    }
    if let Some(id) = record.collapse_id.as_deref().filter(|id| id.len() > 64) {
        return refuse(400, "BadCollapseId", format!("apns-collapse-id of {} bytes", id.len()));
    }
    if let Some(id) = record.apns_id.as_deref().filter(|id| !is_canonical_uuid(id)) {
        return refuse(400, "BadMessageId", format!("apns-id {id:?} is not a canonical UUID"));
    }
    let limit = if push_type == Some("voip") { VOIP_PAYLOAD_LIMIT } else { PAYLOAD_LIMIT };
    if too_large || record.body.len() > limit {
        return refuse(413, "PayloadTooLarge", format!("payload of {} bytes, limit {limit}", record.body.len()));
    }
    if record.body.is_empty() {
        return refuse(400, "PayloadEmpty", "empty body");
    }
    if record.payload.as_ref().is_none_or(|p| !p.is_object()) {
        // Apple documents no reason for a payload that is not a JSON object.
        return refuse(400, "BadRequest", "the payload is not a JSON object");
    }
    Ok(())
}

fn check_provider_token(state: &State, record: &mut ApnsRequest) -> Result<(), Refusal> {
    let Some(token) = record.provider_token.clone() else {
        return refuse(403, "MissingProviderToken", "no `authorization: bearer` header");
    };
    if let Ok(header) = jsonwebtoken::decode_header(&token) {
        record.kid = header.kid.clone();
    }
    let (header, claims) = verify_jwt(&token, &state.verifying_key, jsonwebtoken::Algorithm::ES256)
        .or_else(|why| refuse(403, "InvalidProviderToken", why))?;
    record.iat = seconds(&claims, "iat");
    record.iss = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
    if header.kid.as_deref() != Some(state.config.key_id.as_str()) {
        return refuse(
            403,
            "InvalidProviderToken",
            format!("kid {:?}, expected {:?}", header.kid, state.config.key_id),
        );
    }
    if record.iss.as_deref() != Some(state.config.team_id.as_str()) {
        return refuse(
            403,
            "InvalidProviderToken",
            format!("iss {:?}, expected {:?}", record.iss, state.config.team_id),
        );
    }
    let Some(iat) = record.iat else { return refuse(403, "InvalidProviderToken", "no numeric iat") };
    let now = unix_now();
    if iat > now + CLOCK_SKEW_S {
        return refuse(403, "InvalidProviderToken", format!("iat {iat} is in the future (now {now})"));
    }
    if now.saturating_sub(iat) > TOKEN_LIFETIME_S {
        return refuse(403, "ExpiredProviderToken", format!("iat {iat} is over an hour old (now {now})"));
    }
    Ok(())
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_canonical_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}
