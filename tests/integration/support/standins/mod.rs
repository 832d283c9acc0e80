//! Local stand-ins for the push providers of contract section 10: APNs ([`Apns`]), FCM with
//! its OAuth2 token endpoint ([`Fcm`]) and a Web Push service ([`WebPush`]). Each is a server
//! on 127.0.0.1 (port 0) that speaks the provider's protocol, checks the credentials and the
//! request as the provider does, records every request with the time it arrived, and answers
//! from a script the test sets (per device token or subscription, consumed in order, then a
//! default). Each is started by an async constructor and stops when its handle is dropped.
//!
//! What every stand-in shares lives here: the request [`Log`] with its bounded waits, the
//! per-key reply [`Script`], the connection loop (HTTP/1.1 and h2c, or HTTP/2 only, optionally
//! behind TLS) and a throw-away certificate authority.
//!
//! In a test (the stand-ins run on the test's own runtime, so the test must not block it):
//!
//! ```text
//! let apns = Apns::start(ApnsConfig::from_key_file(keys::fixture("apns.p8"), "KEY1234567", "TEAM123456")).await;
//! let fcm = Fcm::start(FcmConfig::from_service_account_file(keys::fixture("fcm-service-account.json"))).await;
//! let push = WebPush::start(keys::VAPID_PUBLIC.trim()).await;
//! // switchboard with APNS_URL = apns.url(), FCM_URL = fcm.url(), FCM_TOKEN_URL = fcm.token_url()
//! // (or FCM_SERVICE_ACCOUNT_FILE = fcm.service_account_file()), WEBPUSH_ALLOWED_HOSTS = 127.0.0.1;
//! // a browser device registered with push.subscribe().json().
//! apns.respond(token, vec![apns::Reply::service_unavailable(), apns::Reply::ok()]);
//! let sent = apns.wait_for(2, WAIT).await;          // both attempts, each with its arrival time
//! assert_eq!(sent[0].apns_id, sent[1].apns_id);
//! let pushed = push.wait_for(1, WAIT).await;        // decrypted: pushed[0].payload
//! fcm.log().expect_no_more(0, Duration::from_secs(1)).await;
//! ```

// A library for the push tests: not every part of it is used by every test build.
#![allow(dead_code)]

pub mod apns;
pub mod fcm;
pub mod webpush;

pub use apns::Apns;
pub use fcm::Fcm;
pub use webpush::WebPush;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// The throw-away keys of `tests/fixtures/push` (see its README), and one more RSA key.
pub mod keys {
    use std::path::PathBuf;

    /// A P-256 PKCS#8 PEM key, as Apple's `.p8` files are.
    pub const APNS_P8: &str = include_str!("../../../fixtures/push/apns.p8");
    /// A Google service account (`client_email`, `private_key`, `project_id`, …).
    pub const FCM_SERVICE_ACCOUNT: &str = include_str!("../../../fixtures/push/fcm-service-account.json");
    /// The VAPID key (P-256 PKCS#8 PEM) and its public key as `/push/config` serves it.
    pub const VAPID_PEM: &str = include_str!("../../../fixtures/push/vapid.pem");
    pub const VAPID_PUBLIC: &str = include_str!("../../../fixtures/push/vapid-public.b64url");
    /// Another 2048-bit RSA key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`):
    /// assertions signed with it must be refused.
    pub const RSA_OTHER: &str = include_str!("keys/rsa-other.pem");

    /// The path of a file of `tests/fixtures/push` (e.g. `apns.p8`), for a setting.
    pub fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/push").join(name)
    }

    /// The service account's `private_key`.
    pub fn fcm_private_key() -> String {
        let account: serde_json::Value = serde_json::from_str(FCM_SERVICE_ACCOUNT).expect("JSON");
        account["private_key"].as_str().expect("a private_key").to_owned()
    }
}

/// How much of a request body a stand-in reads; a larger body is answered 413.
const BODY_LIMIT: usize = 64 * 1024;

/// Allowed difference between the stand-in's clock and a token's `iat` in the future.
const CLOCK_SKEW_S: u64 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The request log

/// Every request a stand-in received, in arrival order (also those it refused), and bounded
/// waits for more. Cloning shares the log.
pub struct Log<T> {
    inner: Arc<LogInner<T>>,
}

struct LogInner<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: Clone + Debug> Default for Log<T> {
    fn default() -> Self {
        Self { inner: Arc::new(LogInner { items: Mutex::new(Vec::new()), changed: Notify::new() }) }
    }
}

impl<T: Clone + Debug> Log<T> {
    pub(crate) fn push(&self, item: T) {
        lock(&self.inner.items).push(item);
        self.inner.changed.notify_waiters();
    }

    /// What has arrived so far.
    pub fn all(&self) -> Vec<T> {
        lock(&self.inner.items).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.items).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what has arrived (a later [`wait_for`](Self::wait_for) counts from zero).
    pub fn clear(&self) {
        lock(&self.inner.items).clear();
    }

    /// Waits until at least `count` requests have arrived and returns all of them; fails the
    /// test, listing what did arrive, after `bound`.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<T> {
        self.wait_until(bound, &format!("{count} requests"), |items| items.len() >= count).await
    }

    /// Waits until `done` holds for what has arrived and returns it; fails the test, naming
    /// `what` and listing what did arrive, after `bound`.
    pub async fn wait_until(&self, bound: Duration, what: &str, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let items = lock(&self.inner.items);
                if done(&items) {
                    return items.clone();
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let items = self.all();
                panic!("timed out after {bound:?} waiting for {what}; {} arrived: {items:#?}", items.len());
            }
        }
    }

    /// Watches for `window` and fails the test as soon as more than `count` requests have
    /// arrived, or at the end if fewer have; returns them. For "nothing more is sent".
    pub async fn expect_no_more(&self, count: usize, window: Duration) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let items = self.all();
            assert!(items.len() <= count, "expected {count} requests, {} arrived: {items:#?}", items.len());
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        let items = self.all();
        assert_eq!(items.len(), count, "expected {count} requests: {items:#?}");
        items
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts

/// Replies per key (a device token, a subscription), each list consumed in order, then the
/// default.
pub(crate) struct Script<R> {
    queues: Mutex<HashMap<String, VecDeque<R>>>,
    default: Mutex<R>,
}

impl<R: Clone> Script<R> {
    pub(crate) fn new(default: R) -> Self {
        Self { queues: Mutex::new(HashMap::new()), default: Mutex::new(default) }
    }

    /// Appends `replies` to what `key` will be answered.
    pub(crate) fn push(&self, key: &str, replies: Vec<R>) {
        lock(&self.queues).entry(key.to_owned()).or_default().extend(replies);
    }

    pub(crate) fn set_default(&self, reply: R) {
        *lock(&self.default) = reply;
    }

    pub(crate) fn next(&self, key: &str) -> R {
        if let Some(reply) = lock(&self.queues).get_mut(key).and_then(VecDeque::pop_front) {
            return reply;
        }
        lock(&self.default).clone()
    }

    /// Replies scripted for `key` and not yet used.
    pub(crate) fn pending(&self, key: &str) -> usize {
        lock(&self.queues).get(key).map_or(0, VecDeque::len)
    }
}

/// What a scripted reply does besides (or instead of) answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answers (after the reply's delay, if any).
    Respond,
    /// Never answers: the request stays open until the client gives up or the stand-in stops.
    Hang,
    /// Drops the connection (TCP close, no HTTP answer) after the delay: a connection error.
    Disconnect,
    /// HTTP/2: sends GOAWAY on the connection, then closes it without answering this request.
    GoAway,
}

/// Answers as `action` says, after `delay`.
pub(crate) async fn perform(
    action: Action,
    delay: Option<Duration>,
    conn: &Conn,
    response: Response<Body>,
) -> Response<Body> {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match action {
        Action::Respond => return response,
        Action::Hang => {}
        Action::Disconnect => conn.send(Control::Close),
        Action::GoAway => conn.send(Control::GoAway),
    }
    std::future::pending().await
}

// ---------------------------------------------------------------------------------------------
// The server loop

pub(crate) type Body = Full<Bytes>;

/// Which HTTP versions a stand-in speaks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Protocol {
    /// HTTP/2 only: h2c with prior knowledge, or ALPN `h2` over TLS.
    Http2Only,
    /// HTTP/1.1, and HTTP/2 with prior knowledge.
    Any,
}

pub(crate) enum Control {
    Close,
    GoAway,
}

/// The connection a request came on.
#[derive(Clone)]
pub(crate) struct Conn {
    /// Numbered from 1 in accept order, per stand-in.
    pub id: u64,
    /// The protocol ALPN negotiated (TLS only).
    pub alpn: Option<String>,
    control: mpsc::UnboundedSender<Control>,
}

impl Conn {
    fn send(&self, command: Control) {
        let _ = self.control.send(command);
    }
}

/// A running server; dropping it stops it and every connection it accepted.
pub(crate) struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1, on a free port.
pub(crate) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port")
}

/// Serves `handler` on `listener`.
pub(crate) fn serve<H, F>(
    listener: TcpListener,
    protocol: Protocol,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
) -> Server
where
    H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().expect("has an address");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every connection.
        let mut connections = JoinSet::new();
        let mut accepted = 0;
        loop {
            tokio::select! {
                next = listener.accept() => {
                    let Ok((tcp, _)) = next else { continue };
                    let _ = tcp.set_nodelay(true);
                    accepted += 1;
                    let (handler, tls, id) = (handler.clone(), tls.clone(), accepted);
                    connections.spawn(async move {
                        match tls {
                            None => connection(TokioIo::new(tcp), id, None, protocol, handler).await,
                            Some(acceptor) => {
                                let Ok(stream) = acceptor.accept(tcp).await else { return };
                                let alpn = stream.get_ref().1.alpn_protocol();
                                let alpn = alpn.map(|p| String::from_utf8_lossy(p).into_owned());
                                connection(TokioIo::new(stream), id, alpn, protocol, handler).await;
                            }
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Server { addr, task }
}

async fn connection<I, H, F>(io: I, id: u64, alpn: Option<String>, protocol: Protocol, handler: Arc<H>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (control, mut commands) = mpsc::unbounded_channel();
    let conn = Conn { id, alpn, control };
    let service = service_fn(move |request| {
        let response = handler(request, conn.clone());
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if matches!(protocol, Protocol::Http2Only) {
        builder = builder.http2_only();
    }
    let serving = builder.serve_connection(io, service);
    tokio::pin!(serving);
    tokio::select! {
        _ = serving.as_mut() => {}
        command = commands.recv() => {
            if let Some(Control::GoAway) = command {
                serving.as_mut().graceful_shutdown();
                // Long enough for the GOAWAY frames to leave; the open streams stay unanswered.
                let _ = tokio::time::timeout(Duration::from_millis(100), serving.as_mut()).await;
            }
        }
    }
}

/// The body, or `None` when it is larger than [`BODY_LIMIT`] or cannot be read.
pub(crate) async fn read_body(body: Incoming) -> Option<Bytes> {
    Some(Limited::new(body, BODY_LIMIT).collect().await.ok()?.to_bytes())
}

/// A response of `status` with `headers` and a body.
pub(crate) fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (name.parse::<hyper::header::HeaderName>(), value.parse()) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// A JSON response.
pub(crate) fn respond_json(status: u16, mut headers: Vec<(&str, String)>, body: &serde_json::Value) -> Response<Body> {
    headers.push(("content-type", "application/json; charset=UTF-8".to_owned()));
    respond(status, &headers, body.to_string())
}

/// A header's value as text.
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The token of an `authorization: <scheme> <token>` header whose scheme is `scheme` (any case).
pub(crate) fn credentials(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let value = header(headers, "authorization")?;
    let (given, token) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| token.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// A P-256 public key from a PEM: a PKCS#8 private key (a `.p8`), a SEC1 `EC PRIVATE KEY` or
/// a public key.
pub fn p256_public_key(pem: &str) -> p256::PublicKey {
    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
    if let Ok(secret) = p256::SecretKey::from_pkcs8_pem(pem) {
        return secret.public_key();
    }
    if let Ok(secret) = p256::SecretKey::from_sec1_pem(pem) {
        return secret.public_key();
    }
    p256::PublicKey::from_public_key_pem(pem).expect("a P-256 key in PEM (PKCS#8, SEC1 or public)")
}

/// The ES256 verifying key of a P-256 public key.
pub(crate) fn es256_key(key: &p256::PublicKey) -> jsonwebtoken::DecodingKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = key.to_encoded_point(false);
    let (x, y) = (point.x().expect("uncompressed"), point.y().expect("uncompressed"));
    jsonwebtoken::DecodingKey::from_ec_components(&b64url(x), &b64url(y)).expect("valid components")
}

/// A JWT whose signature `key` verifies with `alg` (and no other check): its header and
/// claims, or why not.
pub(crate) fn verify_jwt(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: jsonwebtoken::Algorithm,
) -> Result<(jsonwebtoken::Header, serde_json::Map<String, serde_json::Value>), String> {
    // Before any LiveKit token of the process could install an HS256-only provider.
    switchboard::auth::install_jwt_crypto();
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
        .map(|data| (data.header, data.claims))
        .map_err(|e| format!("JWT refused: {e}"))
}

/// A numeric claim as whole seconds.
pub(crate) fn seconds(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<u64> {
    claims.get(name)?.as_u64()
}

/// A certificate authority made for one stand-in, and a server certificate it issued for
/// `127.0.0.1` and `localhost`. The CA's PEM file lives as long as this does.
pub(crate) struct TestCa {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl TestCa {
    /// Offers the ALPN protocols `alpn` (e.g. `h2`).
    pub(crate) fn new(alpn: &[&[u8]]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.distinguished_name.push(DnType::CommonName, "switchboard push stand-in CA (throw-away)");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("names");
        leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf = leaf.signed_by(&leaf_key, &ca).expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server certificate and key");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("push-stand-in-ca.pem");
        let pem = ca.pem();
        std::fs::write(&path, &pem).expect("writes the CA file");
        Self { _dir: dir, path, pem, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
