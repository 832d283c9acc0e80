//! The FCM stand-in: Google's OAuth2 token endpoint (`POST /token`, the JWT-bearer grant of a
//! service account) and FCM HTTP v1 (`POST /v1/projects/{project}/messages:send`), on one
//! server speaking HTTP/1.1 and h2c.
//!
//! The token endpoint verifies the RS256 assertion with the service account's public key
//! (`iss` = `client_email`, `scope` with `firebase.messaging`, `aud` = the token URL, `iat`,
//! `exp` ≤ `iat` + 3600) and issues random access tokens. `messages:send` requires one of them,
//! unexpired and not revoked (else 401 `UNAUTHENTICATED`), checks the message as FCM does (a
//! malformed one gets 400 with `google.rpc.BadRequest`), then answers from the script of the
//! message's registration token (default: 200 with the message `name`). Error bodies have FCM
//! v1's shape: `{"error":{"code","message","status","details":[…]}}`.

use super::{
    Action, Body, CLOCK_SKEW_S, Conn, Log, Protocol, Script, Server, bind, credentials, header, lock, perform,
    read_body, respond_json, seconds, serve, unix_now, verify_jwt,
};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, Version};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
    "token",
    "topic",
    "condition",
];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "collapseKey",
    "priority",
    "ttl",
    "restricted_package_name",
    "restrictedPackageName",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
    "direct_boot_ok",
    "directBootOk",
];
/// FCM's limit on a data message (keys and values).
const DATA_LIMIT: usize = 4096;
const MAX_TTL_S: u64 = 2_419_200;

/// The service account whose assertions the token endpoint accepts, and the project.
#[derive(Clone, Debug)]
pub struct FcmConfig {
    client_email: String,
    private_key: String,
    project_id: String,
}

impl FcmConfig {
    /// `private_key_pem`: the account's RSA key (PKCS#8 or PKCS#1 PEM); its public half
    /// verifies the assertions.
    pub fn new(client_email: &str, private_key_pem: &str, project_id: &str) -> Self {
        Self {
            client_email: client_email.to_owned(),
            private_key: private_key_pem.to_owned(),
            project_id: project_id.to_owned(),
        }
    }

    /// From a Google service-account JSON (`client_email`, `private_key`, `project_id`).
    pub fn from_service_account(account: &Value) -> Self {
        let field = |name: &str| account[name].as_str().unwrap_or_else(|| panic!("service account lacks {name}"));
        Self::new(field("client_email"), field("private_key"), field("project_id"))
    }

    /// From a service-account file (e.g. `tests/fixtures/push/fcm-service-account.json`).
    pub fn from_service_account_file(path: impl AsRef<Path>) -> Self {
        let text = std::fs::read_to_string(path.as_ref()).expect("reads the service-account file");
        Self::from_service_account(&serde_json::from_str(&text).expect("service-account JSON"))
    }

    fn verifying_key(&self) -> jsonwebtoken::DecodingKey {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&self.private_key)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&self.private_key))
            .expect("an RSA private key in PEM");
        jsonwebtoken::DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be())
    }
}

/// One `POST /token` (or any request that is not `messages:send`).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub at: Instant,
    pub time: SystemTime,
    pub conn: u64,
    pub version: Version,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The form fields.
    pub form: BTreeMap<String, String>,
    /// The assertion's claims, when its signature verified.
    pub claims: Option<Map<String, Value>>,
    /// The status answered; `None` when the reply hung or disconnected.
    pub status: Option<u16>,
    /// The access token issued, if one was.
    pub access_token: Option<String>,
    /// Why the stand-in refused the request itself (before its script), if it did.
    pub refused: Option<String>,
}

/// One `messages:send` request.
#[derive(Clone, Debug)]
pub struct FcmRequest {
    pub at: Instant,
    pub time: SystemTime,
    pub conn: u64,
    pub version: Version,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The project from the path.
    pub project: String,
    /// The bearer access token as sent.
    pub access_token: Option<String>,
    /// The whole body as JSON, when it is JSON.
    pub body: Option<Value>,
    /// `message.token`.
    pub token: Option<String>,
    /// `message.data`, the values that are strings.
    pub data: BTreeMap<String, String>,
    /// `message.android.priority`, `.ttl` and `.collapse_key`.
    pub priority: Option<String>,
    pub ttl: Option<String>,
    pub collapse_key: Option<String>,
    /// Whether the message (or its `android` block) has a `notification` block.
    pub has_notification: bool,
    pub status: Option<u16>,
    pub refused: Option<String>,
}

/// A scripted answer, with FCM v1's error bodies: `Reply::unregistered()`,
/// `Reply::quota_exceeded(60)`, `Reply::status(500)`, `Reply::hang()`.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    body: Option<Value>,
    retry_after: Option<String>,
    delay: Option<Duration>,
    action: Action,
}

fn google_error(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json!({ "error": error })
}

fn fcm_error(code: &str) -> Value {
    json!({ "@type": FCM_ERROR, "errorCode": code })
}

fn bad_request_detail(field: &str, description: &str) -> Value {
    json!({ "@type": BAD_REQUEST, "fieldViolations": [{ "field": field, "description": description }] })
}

impl Reply {
    /// 200 `{"name":"projects/{project}/messages/{id}"}` (for the token endpoint: a token).
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// `status` with a Google error body of that status (`INVALID_ARGUMENT`, `UNAUTHENTICATED`,
    /// `PERMISSION_DENIED`, `NOT_FOUND`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`, …)
    /// and no `details`.
    pub fn status(status: u16) -> Self {
        Self { status, body: None, retry_after: None, delay: None, action: Action::Respond }
    }

    /// This exact JSON body.
    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
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

    /// 404 `NOT_FOUND` with FcmError `UNREGISTERED`: the token is dead.
    pub fn unregistered() -> Self {
        Self::status(404).body(google_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            vec![fcm_error("UNREGISTERED")],
        ))
    }

    /// 400 `INVALID_ARGUMENT` with FcmError `INVALID_ARGUMENT`: the token is not valid.
    pub fn invalid_token() -> Self {
        Self::status(400).body(google_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            vec![fcm_error("INVALID_ARGUMENT")],
        ))
    }

    /// 400 `INVALID_ARGUMENT` with `google.rpc.BadRequest`: the message is malformed.
    pub fn bad_request(field: &str) -> Self {
        let message = format!("Invalid value at '{field}' (TYPE_STRING), 12");
        Self::status(400).body(google_error(
            400,
            "INVALID_ARGUMENT",
            &message,
            vec![bad_request_detail(field, &message)],
        ))
    }

    /// 403 `PERMISSION_DENIED` with FcmError `SENDER_ID_MISMATCH`.
    pub fn sender_id_mismatch() -> Self {
        Self::status(403).body(google_error(
            403,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            vec![fcm_error("SENDER_ID_MISMATCH")],
        ))
    }

    /// 429 `RESOURCE_EXHAUSTED` with FcmError `QUOTA_EXCEEDED` and `Retry-After`.
    pub fn quota_exceeded(retry_after_s: u64) -> Self {
        Self::status(429)
            .body(google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
                vec![fcm_error("QUOTA_EXCEEDED")],
            ))
            .retry_after(retry_after_s)
    }

    /// 500 `INTERNAL` with FcmError `INTERNAL`.
    pub fn internal() -> Self {
        Self::status(500).body(google_error(
            500,
            "INTERNAL",
            "Internal error encountered.",
            vec![fcm_error("INTERNAL")],
        ))
    }

    /// 503 `UNAVAILABLE` with FcmError `UNAVAILABLE`.
    pub fn unavailable() -> Self {
        Self::status(503).body(google_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            vec![fcm_error("UNAVAILABLE")],
        ))
    }

    /// 401 `UNAUTHENTICATED`, as for an access token FCM no longer accepts.
    pub fn unauthenticated() -> Self {
        Self::status(401).body(unauthenticated_body())
    }

    /// 401 with FcmError `THIRD_PARTY_AUTH_ERROR` (the APNs certificate or web push key of
    /// the Firebase project was refused).
    pub fn third_party_auth_error() -> Self {
        Self::status(401).body(google_error(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            vec![fcm_error("THIRD_PARTY_AUTH_ERROR")],
        ))
    }

    pub fn hang() -> Self {
        Self { action: Action::Hang, ..Self::ok() }
    }

    pub fn disconnect() -> Self {
        Self { action: Action::Disconnect, ..Self::ok() }
    }

    fn error_body(&self) -> Value {
        if let Some(body) = &self.body {
            return body.clone();
        }
        let (status, message) = match self.status {
            400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            401 => return unauthenticated_body(),
            403 => ("PERMISSION_DENIED", "The caller does not have permission"),
            404 => ("NOT_FOUND", "Requested entity was not found."),
            429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
            503 => ("UNAVAILABLE", "The service is currently unavailable."),
            _ => ("INTERNAL", "Internal error encountered."),
        };
        google_error(self.status, status, message, Vec::new())
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        self.retry_after.iter().map(|v| ("retry-after", v.clone())).collect()
    }
}

fn unauthenticated_body() -> Value {
    google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        Vec::new(),
    )
}

struct State {
    config: FcmConfig,
    verifying_key: jsonwebtoken::DecodingKey,
    token_url: String,
    expires_in: AtomicU64,
    /// Issued access tokens and when each expires; revoked ones are removed.
    access_tokens: Mutex<HashMap<String, Instant>>,
    script: Script<Reply>,
    token_script: Script<Reply>,
    log: Log<FcmRequest>,
    token_log: Log<TokenRequest>,
}

/// A running FCM stand-in; dropping it stops it.
pub struct Fcm {
    state: Arc<State>,
    server: Server,
    account_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fcm {
    pub async fn start(config: FcmConfig) -> Self {
        let listener = bind().await;
        let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("has an address").port());
        let state = Arc::new(State {
            verifying_key: config.verifying_key(),
            config,
            token_url: format!("{url}/token"),
            expires_in: AtomicU64::new(3599),
            access_tokens: Mutex::new(HashMap::new()),
            script: Script::new(Reply::ok()),
            token_script: Script::new(Reply::ok()),
            log: Log::default(),
            token_log: Log::default(),
        });
        let handler_state = state.clone();
        let server = serve(listener, Protocol::Any, None, move |request, conn| {
            let state = handler_state.clone();
            async move { handle(&state, request, conn).await }
        });
        let dir = tempfile::tempdir().expect("a temporary directory");
        let account_file = dir.path().join("fcm-service-account.json");
        let account = json!({
            "type": "service_account",
            "project_id": state.config.project_id,
            "private_key_id": "stand-in",
            "private_key": state.config.private_key,
            "client_email": state.config.client_email,
            "client_id": "1",
            "auth_uri": format!("{url}/auth"),
            "token_uri": state.token_url,
        });
        std::fs::write(&account_file, account.to_string()).expect("writes the service-account file");
        Self { state, server, account_file, _dir: dir }
    }

    /// `http://127.0.0.1:port`: the value for `FCM_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.addr.port())
    }

    /// `{url}/token`: the value for `FCM_TOKEN_URL`, and the `aud` assertions must carry.
    pub fn token_url(&self) -> &str {
        &self.state.token_url
    }

    pub fn project_id(&self) -> &str {
        &self.state.config.project_id
    }

    pub fn client_email(&self) -> &str {
        &self.state.config.client_email
    }

    /// A service-account file of the configured account whose `token_uri` is this stand-in:
    /// the value for `FCM_SERVICE_ACCOUNT_FILE`.
    pub fn service_account_file(&self) -> &Path {
        &self.account_file
    }

    /// The `expires_in` of tokens issued from now on (initially 3599 s); 0 issues tokens
    /// already expired.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Every access token issued so far stops being accepted (the next send gets 401).
    pub fn revoke_access_tokens(&self) {
        lock(&self.state.access_tokens).clear();
    }

    /// Successful token fetches (access tokens issued).
    pub fn token_fetches(&self) -> usize {
        self.state.token_log.all().iter().filter(|r| r.access_token.is_some()).count()
    }

    /// Answers `registration_token`'s next sends with `replies`, in order, then the default.
    pub fn respond(&self, registration_token: &str, replies: Vec<Reply>) {
        self.state.script.push(registration_token, replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.script.set_default(reply);
    }

    pub fn pending(&self, registration_token: &str) -> usize {
        self.state.script.pending(registration_token)
    }

    /// Answers the next valid token requests with `replies` (`Reply::ok()` issues a token;
    /// an error status gets an OAuth2 error body), then issues tokens.
    pub fn respond_token(&self, replies: Vec<Reply>) {
        self.state.token_script.push("", replies);
    }

    /// Every `messages:send` request so far, refused ones included.
    pub fn log(&self) -> &Log<FcmRequest> {
        &self.state.log
    }

    /// Every token request so far, refused ones included.
    pub fn token_log(&self) -> &Log<TokenRequest> {
        &self.state.token_log
    }

    pub fn requests(&self) -> Vec<FcmRequest> {
        self.state.log.all()
    }

    /// Waits (at most `bound`) for `count` `messages:send` requests in all; returns them all.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<FcmRequest> {
        self.state.log.wait_for(count, bound).await
    }
}

async fn handle(state: &State, request: Request<Incoming>, conn: Conn) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match path.strip_prefix("/v1/projects/").and_then(|rest| rest.strip_suffix("/messages:send")) {
        Some(project) => {
            let project = project.to_owned();
            send(state, request, conn, project).await
        }
        None => token(state, request, conn).await,
    }
}

/// An OAuth2 error (RFC 6749 5.2) as Google's token endpoint answers it.
fn oauth_error(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

async fn token(state: &State, request: Request<Incoming>, conn: Conn) -> Response<Body> {
    let (at, time) = (Instant::now(), SystemTime::now());
    let (parts, body) = request.into_parts();
    let body = read_body(body).await.unwrap_or_default();
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let mut record = TokenRequest {
        at,
        time,
        conn: conn.id,
        version: parts.version,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        form,
        claims: None,
        status: None,
        access_token: None,
        refused: None,
    };
    let reply = match check_assertion(state, &mut record) {
        Err((status, body, why)) => {
            record.refused = Some(why);
            Reply::status(status).body(body)
        }
        Ok(()) => state.token_script.next(""),
    };
    let response = if reply.status == 200 && reply.body.is_none() && reply.action == Action::Respond {
        let access_token = format!("ya29.stand-in-{}", uuid::Uuid::new_v4().simple());
        let expires_in = state.expires_in.load(Ordering::SeqCst);
        lock(&state.access_tokens).insert(access_token.clone(), Instant::now() + Duration::from_secs(expires_in));
        record.access_token = Some(access_token.clone());
        let body = json!({ "access_token": access_token, "expires_in": expires_in, "token_type": "Bearer" });
        respond_json(200, reply.headers(), &body)
    } else {
        let body = reply.body.clone().unwrap_or_else(|| oauth_error("internal_failure", "Internal error."));
        respond_json(reply.status, reply.headers(), &body)
    };
    if reply.action == Action::Respond {
        record.status = Some(reply.status);
    }
    state.token_log.push(record);
    perform(reply.action, reply.delay, &conn, response).await
}

type Refusal = (u16, Value, String);

fn check_assertion(state: &State, record: &mut TokenRequest) -> Result<(), Refusal> {
    let invalid_grant = |description: &str, why: String| Err((400, oauth_error("invalid_grant", description), why));
    if record.path != "/token" || record.method != "POST" {
        return Err((404, oauth_error("not_found", "Not Found"), format!("{} {}", record.method, record.path)));
    }
    let form_type = header(&record.headers, "content-type").unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        let why = format!("content-type {form_type:?}");
        return Err((400, oauth_error("invalid_request", "Invalid request: not a form."), why));
    }
    let grant_type = record.form.get("grant_type").cloned().unwrap_or_default();
    if grant_type != GRANT_TYPE {
        let description = format!("Invalid grant_type: {grant_type}");
        return Err((400, oauth_error("unsupported_grant_type", &description), description));
    }
    let Some(assertion) = record.form.get("assertion").cloned() else {
        let description = "Missing required parameter: assertion";
        return Err((400, oauth_error("invalid_request", description), description.to_owned()));
    };
    let claims = match verify_jwt(&assertion, &state.verifying_key, jsonwebtoken::Algorithm::RS256) {
        Ok((_, claims)) => claims,
        Err(why) => return invalid_grant("Invalid JWT Signature.", why),
    };
    record.claims = Some(claims.clone());
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    if text("iss") != state.config.client_email {
        let why = format!("iss {:?}, expected {:?}", text("iss"), state.config.client_email);
        return invalid_grant("Invalid grant: account not found", why);
    }
    if !text("scope").split(' ').any(|s| s == SCOPE) {
        let why = format!("scope {:?} lacks {SCOPE}", text("scope"));
        return Err((400, oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided."), why));
    }
    if text("aud") != state.token_url {
        return invalid_grant(
            "Invalid JWT: Failed audience check.",
            format!("aud {:?}, expected {:?}", text("aud"), state.token_url),
        );
    }
    let (iat, exp, now) = (seconds(&claims, "iat"), seconds(&claims, "exp"), unix_now());
    let timeframe = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp > iat && exp - iat <= 3600 && exp > now && iat <= now + CLOCK_SKEW_S => Ok(()),
        _ => invalid_grant(timeframe, format!("iat {iat:?}, exp {exp:?}, now {now}")),
    }
}

async fn send(state: &State, request: Request<Incoming>, conn: Conn, project: String) -> Response<Body> {
    let (at, time) = (Instant::now(), SystemTime::now());
    let (parts, body) = request.into_parts();
    let body = read_body(body).await;
    let json: Option<Value> = body.as_ref().and_then(|b| serde_json::from_slice(b).ok());
    let message = json.as_ref().and_then(|j| j.get("message"));
    let android = message.and_then(|m| m.get("android"));
    let text = |v: Option<&Value>, name: &str| v.and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_owned);
    let mut record = FcmRequest {
        at,
        time,
        conn: conn.id,
        version: parts.version,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        project,
        access_token: credentials(&parts.headers, "bearer"),
        token: text(message, "token"),
        data: message
            .and_then(|m| m.get("data"))
            .and_then(Value::as_object)
            .map(|data| data.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default(),
        priority: text(android, "priority"),
        ttl: text(android, "ttl"),
        collapse_key: text(android, "collapse_key").or_else(|| text(android, "collapseKey")),
        has_notification: message.is_some_and(|m| m.get("notification").is_some())
            || android.is_some_and(|a| a.get("notification").is_some()),
        body: json.clone(),
        status: None,
        refused: None,
    };
    let reply = match check_send(state, &record, body.is_none()) {
        Err((reply, why)) => {
            record.refused = Some(why);
            reply
        }
        Ok(()) => state.script.next(record.token.as_deref().unwrap_or_default()),
    };
    let response = if reply.status == 200 && reply.body.is_none() {
        let name = format!("projects/{}/messages/0:{}%{}", record.project, unix_now(), uuid::Uuid::new_v4().simple());
        respond_json(200, reply.headers(), &json!({ "name": name }))
    } else {
        respond_json(reply.status, reply.headers(), &reply.error_body())
    };
    if reply.action == Action::Respond {
        record.status = Some(reply.status);
    }
    state.log.push(record);
    perform(reply.action, reply.delay, &conn, response).await
}

/// A message FCM would refuse as malformed: 400 with `google.rpc.BadRequest`.
fn malformed<T>(field: &str, description: &str) -> Result<T, (Reply, String)> {
    let body = google_error(400, "INVALID_ARGUMENT", description, vec![bad_request_detail(field, description)]);
    Err((Reply::status(400).body(body), format!("{field}: {description}")))
}

fn check_send(state: &State, record: &FcmRequest, too_large: bool) -> Result<(), (Reply, String)> {
    if record.method != "POST" {
        return Err((Reply::status(404), format!("method {}", record.method)));
    }
    let token = record.access_token.as_deref().unwrap_or_default();
    let valid = lock(&state.access_tokens).get(token).is_some_and(|expiry| Instant::now() < *expiry);
    if !valid {
        let why = if record.access_token.is_none() { "no bearer token" } else { "unknown, expired or revoked token" };
        return Err((Reply::unauthenticated(), why.to_owned()));
    }
    if record.project != state.config.project_id {
        let message = format!(
            "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{}' (or it may not exist).",
            record.project
        );
        let body = google_error(403, "PERMISSION_DENIED", &message, Vec::new());
        return Err((Reply::status(403).body(body), format!("project {:?}", record.project)));
    }
    if too_large {
        return malformed("message", "Request payload size exceeds the limit");
    }
    let Some(body) = record.body.as_ref().and_then(Value::as_object) else {
        return malformed("", "Invalid JSON payload received.");
    };
    if let Some(name) = body.keys().find(|k| !["message", "validate_only", "validateOnly"].contains(&k.as_str())) {
        return malformed(name, &format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."));
    }
    let Some(message) = body.get("message").and_then(Value::as_object) else {
        return malformed("message", "Invalid JSON payload received. 'message' must be an object.");
    };
    if let Some(name) = message.keys().find(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        let description =
            format!("Invalid JSON payload received. Unknown name \"{name}\" at 'message': Cannot find field.");
        return malformed(&format!("message.{name}"), &description);
    }
    let targets = ["token", "topic", "condition"].iter().filter(|t| message.contains_key(**t)).count();
    if targets != 1 || record.token.as_deref().is_none_or(str::is_empty) {
        return malformed(
            "message",
            "Exactly one of message.token, topic or condition, a non-empty string, is required.",
        );
    }
    let mut size = 0;
    if let Some(data) = message.get("data") {
        let Some(data) = data.as_object() else {
            return malformed("message.data", "Invalid value at 'message.data' (map), not an object");
        };
        for (index, (key, value)) in data.iter().enumerate() {
            let Some(value) = value.as_str() else {
                return malformed(
                    &format!("message.data[{index}].value"),
                    &format!("Invalid value at 'message.data[{index}].value' (TYPE_STRING), {value}"),
                );
            };
            if ["from", "message_type"].contains(&key.as_str()) || key.starts_with("google.") || key.starts_with("gcm.")
            {
                return malformed(&format!("message.data[{index}].key"), &format!("Invalid data payload key: {key}"));
            }
            size += key.len() + value.len();
        }
    }
    if size > DATA_LIMIT {
        return malformed("message.data", &format!("Message is too big: {size} bytes of data, limit {DATA_LIMIT}"));
    }
    if let Some(android) = message.get("android") {
        let Some(android) = android.as_object() else {
            return malformed("message.android", "Invalid value at 'message.android', not an object");
        };
        if let Some(name) = android.keys().find(|k| !ANDROID_FIELDS.contains(&k.as_str())) {
            let description = format!(
                "Invalid JSON payload received. Unknown name \"{name}\" at 'message.android': Cannot find field."
            );
            return malformed(&format!("message.android.{name}"), &description);
        }
        if let Some(priority) =
            android.get("priority").filter(|p| !["NORMAL", "HIGH"].contains(&p.as_str().unwrap_or("")))
        {
            return malformed(
                "message.android.priority",
                &format!(
                    "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority}"
                ),
            );
        }
        if let Some(ttl) =
            android.get("ttl").filter(|t| t.as_str().and_then(duration_seconds).is_none_or(|s| s > MAX_TTL_S))
        {
            return malformed(
                "message.android.ttl",
                &format!(
                    "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"
                ),
            );
        }
        if let Some(key) = android.get("collapse_key").or_else(|| android.get("collapseKey")).filter(|k| !k.is_string())
        {
            return malformed(
                "message.android.collapse_key",
                &format!("Invalid value at 'message.android.collapse_key' (TYPE_STRING), {key}"),
            );
        }
    }
    Ok(())
}

/// A protobuf `Duration` in JSON (`"3.5s"`, `"60s"`), whole seconds.
fn duration_seconds(text: &str) -> Option<u64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!whole.is_empty() && digits(whole) && digits(fraction) && fraction.len() <= 9).then(|| whole.parse().ok())?
}
