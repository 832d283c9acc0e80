//! The Web Push stand-in: a push service (RFC 8030) on `http://127.0.0.1` that also plays the
//! browser: [`WebPush::subscribe`] makes a subscription with a fresh P-256 key pair and auth
//! secret it keeps, and every push to `POST /push/{id}` is decrypted with them (RFC 8291,
//! `aes128gcm` of RFC 8188) so the test reads the plaintext.
//!
//! Like a push service it requires VAPID (RFC 8292: `Authorization: vapid t=<JWT>, k=<key>`,
//! ES256 verified with `k`, `aud` = this origin, `exp` in the future and at most 24 h ahead,
//! `sub` a `mailto:` or `https:` URL; 401 otherwise, 403 when `k` is not the expected
//! application server key), a `TTL` header (400 without), `Content-Encoding: aes128gcm`, a
//! valid `Urgency` and `Topic`, and a body of at most 4096 bytes (413) in one record that
//! decrypts (400). A push that passes is answered from its subscription's script (default:
//! 201 Created).

use super::{
    Action, Body, Conn, Log, Protocol, Script, Server, b64url, b64url_decode, bind, es256_key, header, lock, perform,
    read_body, respond, seconds, serve, unix_now, verify_jwt,
};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, Version};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// RFC 8030: a push service must accept bodies of up to 4096 bytes.
const BODY_LIMIT: usize = 4096;
/// RFC 8292: `exp` no more than 24 hours ahead.
const MAX_EXP_AHEAD_S: u64 = 24 * 3600;
const URGENCIES: &[&str] = &["very-low", "low", "normal", "high"];
/// RFC 8188 header: salt (16), record size (4), key id length (1).
const HEADER_LEN: usize = 21;
/// RFC 8291: the key id is the sender's uncompressed P-256 public key.
const KEY_ID_LEN: usize = 65;

/// A browser's `PushSubscription`, as it registers one with switchboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    /// `http://127.0.0.1:port/push/{id}`.
    pub endpoint: String,
    /// base64url of the 65-byte uncompressed public key.
    pub p256dh: String,
    /// base64url of the 16-byte auth secret.
    pub auth: String,
}

impl Subscription {
    /// `{"endpoint", "keys": {"p256dh", "auth"}}`, as `PushSubscription.toJSON()` gives it.
    pub fn json(&self) -> Value {
        json!({ "endpoint": self.endpoint, "keys": { "p256dh": self.p256dh, "auth": self.auth } })
    }
}

/// The VAPID credentials a push carried.
#[derive(Clone, Debug)]
pub struct Vapid {
    /// The JWT as sent (`t`).
    pub token: String,
    /// The application server key as sent (`k`).
    pub k: String,
    /// The JWT's claims, when its signature verified with `k`.
    pub claims: Option<Map<String, Value>>,
    pub aud: Option<String>,
    pub exp: Option<u64>,
    pub sub: Option<String>,
}

/// One push as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct PushRequest {
    pub at: Instant,
    pub time: SystemTime,
    pub conn: u64,
    pub version: Version,
    pub method: String,
    pub path: String,
    /// The subscription id from the path.
    pub subscription: String,
    pub headers: HeaderMap,
    /// `TTL`, when an integer.
    pub ttl: Option<u64>,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    pub content_encoding: Option<String>,
    pub vapid: Option<Vapid>,
    pub body_len: usize,
    /// The `rs` of the `aes128gcm` header.
    pub record_size: Option<u32>,
    /// The decrypted message, and it parsed as JSON when it is JSON.
    pub plaintext: Option<Vec<u8>>,
    pub payload: Option<Value>,
    /// The status answered; `None` when the reply hung or disconnected.
    pub status: Option<u16>,
    /// Why the stand-in refused the push itself (before its script), if it did.
    pub refused: Option<String>,
}

/// A scripted answer: `Reply::created()`, `Reply::gone()`, `Reply::status(429).retry_after(5)`.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    retry_after: Option<String>,
    delay: Option<Duration>,
    action: Action,
}

impl Reply {
    /// 201 Created with a `Location`.
    pub fn created() -> Self {
        Self::status(201)
    }

    pub fn status(status: u16) -> Self {
        Self { status, retry_after: None, delay: None, action: Action::Respond }
    }

    /// 404: the subscription expired.
    pub fn not_found() -> Self {
        Self::status(404)
    }

    /// 410: the subscription is gone.
    pub fn gone() -> Self {
        Self::status(410)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_s: u64) -> Self {
        Self::status(429).retry_after(retry_after_s)
    }

    pub fn retry_after(self, seconds: u64) -> Self {
        self.retry_after_raw(&seconds.to_string())
    }

    /// A `Retry-After` header with this exact value (e.g. an HTTP date).
    pub fn retry_after_raw(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn hang() -> Self {
        Self { action: Action::Hang, ..Self::created() }
    }

    pub fn disconnect() -> Self {
        Self { action: Action::Disconnect, ..Self::created() }
    }

    fn response(&self, ttl: Option<u64>, text: &str) -> Response<Body> {
        let mut headers = Vec::new();
        if let Some(value) = &self.retry_after {
            headers.push(("retry-after", value.clone()));
        }
        if self.status == 201 {
            headers.push(("location", format!("/message/{}", uuid::Uuid::new_v4().simple())));
            headers.push(("ttl", ttl.unwrap_or_default().to_string()));
            return respond(201, &headers, "");
        }
        headers.push(("content-type", "text/plain; charset=utf-8".to_owned()));
        respond(self.status, &headers, text.to_owned())
    }
}

struct Keys {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

struct State {
    origin: String,
    /// The expected application server key, decoded.
    vapid_key: Vec<u8>,
    subscriptions: Mutex<HashMap<String, Arc<Keys>>>,
    script: Script<Reply>,
    log: Log<PushRequest>,
}

/// A running Web Push stand-in; dropping it stops it.
pub struct WebPush {
    state: Arc<State>,
    _server: Server,
}

/// The base64url application server key (as `/push/config` gives it) of a VAPID key PEM.
pub fn vapid_public_key(pem: &str) -> String {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    b64url(super::p256_public_key(pem).to_encoded_point(false).as_bytes())
}

impl WebPush {
    /// Accepts pushes signed for `vapid_public_key` (base64url of the uncompressed point, the
    /// `vapidPublicKey` of `/push/config`; see [`vapid_public_key`] for a PEM).
    pub async fn start(vapid_public_key: &str) -> Self {
        let vapid_key = b64url_decode(vapid_public_key).expect("a base64url VAPID public key");
        p256::PublicKey::from_sec1_bytes(&vapid_key).expect("a P-256 point");
        let listener = bind().await;
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().expect("has an address").port());
        let state = Arc::new(State {
            origin,
            vapid_key,
            subscriptions: Mutex::new(HashMap::new()),
            script: Script::new(Reply::created()),
            log: Log::default(),
        });
        let handler_state = state.clone();
        let server = serve(listener, Protocol::Any, None, move |request, conn| {
            let state = handler_state.clone();
            async move { handle(&state, request, conn).await }
        });
        Self { state, _server: server }
    }

    /// `http://127.0.0.1:port`: every endpoint's origin, the `aud` VAPID tokens must carry.
    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    /// A new subscription with a fresh key pair and auth secret, as a browser makes one.
    pub fn subscribe(&self) -> Subscription {
        use p256::elliptic_curve::rand_core::{OsRng, RngCore};
        let mut auth = [0u8; 16];
        OsRng.fill_bytes(&mut auth);
        self.subscribe_with(p256::SecretKey::random(&mut OsRng), auth)
    }

    /// A subscription with these keys (for known test vectors).
    pub fn subscribe_with(&self, secret: p256::SecretKey, auth: [u8; 16]) -> Subscription {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let subscription = Subscription {
            endpoint: format!("{}/push/{id}", self.state.origin),
            p256dh: b64url(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: b64url(&auth),
            id: id.clone(),
        };
        lock(&self.state.subscriptions).insert(id, Arc::new(Keys { secret, auth }));
        subscription
    }

    /// Answers `subscription`'s next pushes with `replies`, in order, then the default.
    pub fn respond(&self, subscription: &Subscription, replies: Vec<Reply>) {
        self.state.script.push(&subscription.id, replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.script.set_default(reply);
    }

    pub fn pending(&self, subscription: &Subscription) -> usize {
        self.state.script.pending(&subscription.id)
    }

    /// Every push so far, refused ones included.
    pub fn log(&self) -> &Log<PushRequest> {
        &self.state.log
    }

    pub fn requests(&self) -> Vec<PushRequest> {
        self.state.log.all()
    }

    /// Waits (at most `bound`) for `count` pushes in all; returns them all.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<PushRequest> {
        self.state.log.wait_for(count, bound).await
    }
}

async fn handle(state: &State, request: Request<Incoming>, conn: Conn) -> Response<Body> {
    let (at, time) = (Instant::now(), SystemTime::now());
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let get = |name: &str| header(&parts.headers, name);
    let mut record = PushRequest {
        at,
        time,
        conn: conn.id,
        version: parts.version,
        method: parts.method.to_string(),
        subscription: path.strip_prefix("/push/").unwrap_or_default().to_owned(),
        path,
        headers: parts.headers.clone(),
        ttl: get("ttl").and_then(|t| t.trim().parse().ok()),
        urgency: get("urgency"),
        topic: get("topic"),
        content_encoding: get("content-encoding"),
        vapid: None,
        body_len: 0,
        record_size: None,
        plaintext: None,
        payload: None,
        status: None,
        refused: None,
    };
    let body = read_body(body).await;
    record.body_len = body.as_ref().map_or(0, |b| b.len());
    let reply = match check(state, &mut record, body.as_deref()) {
        Err((status, why)) => {
            record.refused = Some(why);
            Reply::status(status)
        }
        Ok(()) => state.script.next(&record.subscription),
    };
    if reply.action == Action::Respond {
        record.status = Some(reply.status);
    }
    let text = record.refused.clone().unwrap_or_default();
    let ttl = record.ttl;
    state.log.push(record);
    perform(reply.action, reply.delay, &conn, reply.response(ttl, &text)).await
}

type Refusal = (u16, String);

fn refuse<T>(status: u16, why: impl Into<String>) -> Result<T, Refusal> {
    Err((status, why.into()))
}

fn check(state: &State, record: &mut PushRequest, body: Option<&[u8]>) -> Result<(), Refusal> {
    if record.method != "POST" || !record.path.starts_with("/push/") {
        return refuse(404, format!("{} {}", record.method, record.path));
    }
    let Some(keys) = lock(&state.subscriptions).get(&record.subscription).cloned() else {
        return refuse(404, format!("no subscription {:?}", record.subscription));
    };
    check_vapid(state, record)?;
    let encoding = record.content_encoding.as_deref().unwrap_or_default();
    if encoding != "aes128gcm" {
        return refuse(400, format!("Content-Encoding {encoding:?}, expected aes128gcm"));
    }
    if record.ttl.is_none() {
        return refuse(400, format!("TTL {:?} is missing or not a whole number", header(&record.headers, "ttl")));
    }
    if let Some(urgency) = record.urgency.as_deref().filter(|u| !URGENCIES.contains(u)) {
        return refuse(400, format!("Urgency {urgency:?}"));
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if let Some(topic) = record.topic.as_deref().filter(|t| t.is_empty() || t.len() > 32 || !t.bytes().all(base64url)) {
        return refuse(400, format!("Topic {topic:?} is not 1 to 32 base64url characters"));
    }
    let Some(body) = body.filter(|b| b.len() <= BODY_LIMIT) else {
        return refuse(413, format!("body over {BODY_LIMIT} bytes"));
    };
    if body.len() < HEADER_LEN + KEY_ID_LEN {
        return refuse(400, format!("body of {} bytes is shorter than an aes128gcm header", body.len()));
    }
    let record_size = u32::from_be_bytes([body[16], body[17], body[18], body[19]]);
    record.record_size = Some(record_size);
    if usize::from(body[20]) != KEY_ID_LEN {
        return refuse(400, format!("key id of {} bytes, expected the 65-byte sender key", body[20]));
    }
    let records = body.len() - HEADER_LEN - KEY_ID_LEN;
    if record_size < 18 || records > record_size as usize {
        return refuse(400, format!("{records} bytes of records with rs {record_size}: not one record"));
    }
    let auth = web_push_native::Auth::clone_from_slice(&keys.auth);
    let plaintext = web_push_native::decrypt(body.to_vec(), &keys.secret, &auth)
        .or_else(|e| refuse(400, format!("does not decrypt: {e}")))?;
    record.payload = serde_json::from_slice(&plaintext).ok();
    record.plaintext = Some(plaintext);
    Ok(())
}

/// `vapid t=<JWT>, k=<key>` (RFC 8292 section 3).
fn parse_vapid(value: &str) -> Option<(String, String)> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return None;
    }
    let (mut t, mut k) = (None, None);
    for param in params.split(',') {
        let (name, value) = param.trim().split_once('=')?;
        let value = value.trim().trim_matches('"').to_owned();
        match name.trim() {
            "t" => t = Some(value),
            "k" => k = Some(value),
            _ => {}
        }
    }
    Some((t?, k?))
}

fn check_vapid(state: &State, record: &mut PushRequest) -> Result<(), Refusal> {
    let Some(authorization) = header(&record.headers, "authorization") else {
        return refuse(401, "no Authorization header");
    };
    let Some((token, k)) = parse_vapid(&authorization) else {
        return refuse(401, format!("Authorization {authorization:?} is not `vapid t=…, k=…`"));
    };
    let vapid = record.vapid.insert(Vapid { token, k, claims: None, aud: None, exp: None, sub: None });
    let Some(key) = b64url_decode(&vapid.k).and_then(|k| p256::PublicKey::from_sec1_bytes(&k).ok()) else {
        return refuse(401, format!("k {:?} is not a base64url P-256 point", vapid.k));
    };
    let (_, claims) =
        verify_jwt(&vapid.token, &es256_key(&key), jsonwebtoken::Algorithm::ES256).or_else(|why| refuse(401, why))?;
    vapid.aud = claims.get("aud").and_then(Value::as_str).map(str::to_owned);
    vapid.sub = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
    vapid.exp = seconds(&claims, "exp");
    vapid.claims = Some(claims);
    if b64url_decode(&vapid.k).as_deref() != Some(state.vapid_key.as_slice()) {
        return refuse(403, format!("k {:?} is not the subscription's application server key", vapid.k));
    }
    if vapid.aud.as_deref() != Some(state.origin.as_str()) {
        return refuse(401, format!("aud {:?}, expected {:?}", vapid.aud, state.origin));
    }
    let now = unix_now();
    match vapid.exp {
        Some(exp) if exp > now && exp <= now + MAX_EXP_AHEAD_S => {}
        exp => return refuse(401, format!("exp {exp:?} is not in the next 24 hours (now {now})")),
    }
    let sub = vapid.sub.as_deref().unwrap_or_default();
    let contact = sub.strip_prefix("mailto:").is_some_and(|a| a.contains('@')) || sub.starts_with("https://");
    if !contact {
        return refuse(401, format!("sub {sub:?} is not a mailto: or https: contact"));
    }
    Ok(())
}
