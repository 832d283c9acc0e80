//! Devices (section 10.1 of the contract) and the push settings (10.6): registering,
//! refreshing, moving, listing and deleting the devices a call can wake, the checks on
//! every field, the per-user limit, `/push/config`, who may manage whose devices with
//! `AUTH=token`, erasure taking the devices along, and settings that cannot work stopping
//! the binary. On the embedded store and on two replicas sharing a Redis (requests
//! alternate between them; a client on each listens for events that must not come), some
//! also with `AUTH=token` (a server token). Every provider is configured from the keys of
//! `tests/fixtures/push/`, its URLs a closed local port: nothing here is ever pushed.

use crate::support::{Api, Cluster, RedisServer, SioClient, TestApp, WAIT, assert_problem, id, keyspace, spawn_binary};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

enum Backend {
    Memory,
    /// Two replicas on one Redis.
    Redis,
}

/// The Redis namespace of every replica here: keys live under `{devices}:`.
const NS: &str = "devices";

macro_rules! fixture {
    ($file:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/push/", $file)
    };
}
const APNS_KEY: &str = fixture!("apns.p8");
/// An RSA key where a P-256 key belongs.
const WRONG_KIND_KEY: &str = fixture!("apns-bad.p8");
const FCM_ACCOUNT: &str = fixture!("fcm-service-account.json");
const VAPID_KEY: &str = fixture!("vapid.pem");
/// The public point of `vapid.pem`, derived with openssl when the key was made.
const VAPID_PUBLIC: &str = include_str!("../fixtures/push/vapid-public.b64url");

/// `APNS_TOPIC`: the first is the default `appId`.
const TOPICS: [&str; 2] = ["com.example.calls", "com.example.beta"];
/// A port nothing listens on: the providers' URLs, should anything ever try to push.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The public key of a browser's push subscription: a real point on P-256 (generated with
/// openssl), base64url without padding.
const P256DH: &str = "BOOWL5M9HDXJpvbIdnpw-XeCcrpvecc5mfU5Hzm3auRDWw28IxkIL82W2HJQv-v7cMlpfyBTO9G2ztM7Yx5LU7c";

const APNS_FLAGS: [&str; 12] = [
    "--apns-key-file",
    APNS_KEY,
    "--apns-key-id",
    "KEY0000001",
    "--apns-team-id",
    "TEAM000001",
    "--apns-topic",
    "com.example.calls,com.example.beta",
    "--apns-url",
    NOWHERE,
    "--apns-sandbox-url",
    NOWHERE,
];
const FCM_FLAGS: [&str; 4] = ["--fcm-service-account-file", FCM_ACCOUNT, "--fcm-url", NOWHERE];
const VAPID_FLAGS: [&str; 4] = ["--vapid-private-key-file", VAPID_KEY, "--vapid-subject", "mailto:ops@example.com"];
/// Subscriptions of these tests name `push.example.com`, or a loopback stand-in.
const HOSTS_FLAGS: [&str; 2] = ["--webpush-allowed-hosts", "127.0.0.1,push.example.com"];

/// Every provider configured, with `extra` flags.
fn push_flags(extra: &[&'static str]) -> Vec<&'static str> {
    [&APNS_FLAGS[..], &FCM_FLAGS, &VAPID_FLAGS, &HOSTS_FLAGS, extra].concat()
}

/// Replicas with every provider on and a listening client each; with `--auth token` among
/// the flags, requests and clients act with a server token.
struct Fixture {
    apis: Vec<Api>,
    clients: Vec<SioClient>,
    /// `PUSH_MAX_DEVICES` of the replicas.
    limit: usize,
    redis: Option<RedisServer>,
    _apps: Vec<TestApp>,
}

impl Fixture {
    async fn new(backend: Backend, extra: &[&'static str]) -> Self {
        let flags = push_flags(extra);
        let Cluster { apis, clients, redis, apps } =
            Cluster::start(matches!(backend, Backend::Redis), NS, &flags).await;
        let limit =
            extra.windows(2).find(|w| w[0] == "--push-max-devices").map_or(10, |w| w[1].parse().expect("a limit"));
        Self { apis, clients, limit, redis, _apps: apps }
    }

    /// The replica that serves request `n` (they alternate).
    fn api(&self, n: usize) -> &Api {
        &self.apis[n % self.apis.len()]
    }

    fn base(&self, n: usize) -> &str {
        self.api(n).base()
    }

    /// Every event heard since the last call, the same on every replica's client.
    async fn heard(&mut self) -> Vec<(String, Value)> {
        crate::support::heard_alike(&self.apis[0], &mut self.clients).await
    }

    async fn user(&self, n: usize, name: &str) -> String {
        self.api(n).user(name).await
    }

    /// Registers `name` on replica `n` (`AUTH=token`): its id and an API acting with its
    /// user token on the other replica.
    async fn person(&self, n: usize, name: &str) -> (String, Api) {
        let (status, user) = self.api(n).post("/users", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let token = user["token"].as_str().expect("a token with AUTH=token");
        (id(&user).to_owned(), self.api(n + 1).bearer(token))
    }

    /// Registers a device of `user` on replica `n`, which must answer `expected`.
    async fn device(&self, n: usize, user: &str, body: &Value, expected: StatusCode) -> Value {
        let (status, device, _) = register(self.api(n), user, body).await;
        assert_eq!(status, expected, "{body} → {device}");
        device
    }

    /// The ids of `user`'s devices, listed by replica `n`.
    async fn listed(&self, n: usize, user: &str) -> Vec<String> {
        ids(&list(self.api(n), user).await.0)
    }
}

// ---------------------------------------------------------------------------------------
// Requests and what they carry

/// `POST /users/:user/devices`: the status, the body, and the body as sent.
async fn register(api: &Api, user: &str, body: &Value) -> (StatusCode, Value, String) {
    let res = api.raw(Method::POST, &format!("/users/{user}/devices")).json(body).send().await.expect("sent");
    let status = res.status();
    let text = res.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

/// `GET /users/:user/devices`, which must answer 200 with an array: it and the raw body.
async fn list(api: &Api, user: &str) -> (Vec<Value>, String) {
    let res = api.raw(Method::GET, &format!("/users/{user}/devices")).send().await.expect("sent");
    let status = res.status();
    let text = res.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "{text}");
    let items = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.as_array().cloned());
    (items.unwrap_or_else(|| panic!("an array of devices: {text}")), text)
}

/// `DELETE /users/:user/devices/:device`: the status and the raw body.
async fn delete(api: &Api, user: &str, device: &str) -> (StatusCode, String) {
    let res = api.raw(Method::DELETE, &format!("/users/{user}/devices/{device}")).send().await.expect("sent");
    let status = res.status();
    (status, res.text().await.expect("a body"))
}

/// A GET whose raw body is returned with its status.
async fn get_raw(api: &Api, path: &str) -> (StatusCode, String) {
    let res = api.raw(Method::GET, path).send().await.expect("sent");
    let status = res.status();
    (status, res.text().await.expect("a body"))
}

fn problem(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("a problem document: {text:?}"))
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A fresh PushKit or APNs token: 64 lower-case hex characters.
fn apns_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A fresh FCM registration token (their shape: an instance id, a colon, a long tail).
fn fcm_token() -> String {
    let tail = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    format!("d{}:APA91b-{}_{tail}", &uuid::Uuid::new_v4().simple().to_string()[..21], &tail[..20])
}

/// A fresh endpoint at the allowed stand-in push service.
fn endpoint() -> String {
    format!("https://push.example.com/wpush/v2/{}", uuid::Uuid::new_v4().simple())
}

/// A fresh subscription `auth` secret: 16 random bytes.
fn auth_secret() -> String {
    B64URL.encode(uuid::Uuid::new_v4().as_bytes())
}

fn subscription(endpoint: &str) -> Value {
    json!({ "endpoint": endpoint, "keys": { "p256dh": P256DH, "auth": auth_secret() } })
}

fn apns(platform: &str, token: &str) -> Value {
    json!({ "platform": platform, "token": token })
}

fn fcm(token: &str) -> Value {
    json!({ "platform": "fcm", "token": token })
}

fn webpush(endpoint: &str) -> Value {
    json!({ "platform": "webpush", "subscription": subscription(endpoint) })
}

/// What a registration carries that no response may: its token (as sent and as stored),
/// or its endpoint (and the endpoint's path, however slashes are escaped) and keys.
fn secrets(body: &Value) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(token) = body["token"].as_str().filter(|_| body["platform"] != "webpush") {
        secrets.extend([token.to_owned(), token.to_lowercase()]);
    }
    if let Some(endpoint) = body["subscription"]["endpoint"].as_str() {
        secrets.push(endpoint.to_owned());
        secrets.extend(endpoint.rsplit('/').next().filter(|tail| tail.len() >= 16).map(str::to_owned));
        secrets.push(text(&body["subscription"]["keys"]["p256dh"]).to_owned());
        secrets.push(text(&body["subscription"]["keys"]["auth"]).to_owned());
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

fn assert_hidden(raw: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(!raw.contains(secret.as_str()), "{what} gives away {secret}: {raw}");
    }
}

/// Milliseconds of an ISO timestamp as the contract prints them (`…T19:54:31.123Z`).
fn millis(v: &Value) -> i64 {
    let s = text(v);
    assert!(s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.', "an ISO time with milliseconds: {v}");
    chrono::DateTime::parse_from_rfc3339(s).expect("an ISO time").timestamp_millis()
}

/// Waits until the clock has moved past `ms`, so that whatever is stamped next is later
/// (timestamps have millisecond precision).
async fn clock_past(ms: i64) {
    while chrono::Utc::now().timestamp_millis() <= ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

const DEVICE_FIELDS: [&str; 11] = [
    "id",
    "userId",
    "platform",
    "appId",
    "environment",
    "name",
    "tokenSuffix",
    "endpointOrigin",
    "createdAt",
    "updatedAt",
    "lastPushAt",
];

/// A Device of `user` and `platform`: exactly the contract's fields, a lower-case UUID, no
/// push yet, timestamps in order.
fn assert_device(device: &Value, user: &str, platform: &str) {
    let fields: BTreeSet<&str> = device.as_object().expect("a Device object").keys().map(String::as_str).collect();
    assert_eq!(fields, DEVICE_FIELDS.into_iter().collect(), "exactly the Device fields: {device}");
    let device_id = text(&device["id"]);
    assert!(uuid::Uuid::parse_str(device_id).is_ok() && device_id == device_id.to_lowercase(), "{device}");
    assert_eq!(device_id.len(), 36, "a hyphenated UUID: {device}");
    assert_eq!((text(&device["userId"]), text(&device["platform"])), (user, platform), "{device}");
    assert_eq!(device["lastPushAt"], Value::Null, "nothing was pushed: {device}");
    assert!(millis(&device["createdAt"]) <= millis(&device["updatedAt"]), "{device}");
}

/// The `field` of each error of a 422.
fn error_fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().map(|e| text(&e["field"]).to_owned()).collect()
}

/// The `field` of each error of a 422, by its last segment (a nested field may be named
/// `endpoint`, `subscription.endpoint`, `subscription/keys/auth`, …).
fn error_leaves(body: &Value) -> Vec<String> {
    let errors = body["errors"].as_array().into_iter().flatten();
    errors
        .map(|e| text(&e["field"]).rsplit(['.', '/', '[']).next().unwrap_or_default().trim_end_matches(']').to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Registering, listing, deleting

/// One device of each platform is registered (201) with the defaults and the fields of its
/// platform, listed oldest first by either replica exactly as registered, and deleted (204,
/// no body); tokens, endpoints and keys appear in no response, not even the user's; a
/// deleted device, another user's device, a non-UUID and an unknown user are 404 with
/// their codes; nothing of it is an event. Breaks it: a missing or extra Device field, the
/// token or endpoint echoed, `appId`/`environment` not defaulted (or set for a platform
/// that has none), a token suffix of the token as sent instead of as stored, an origin
/// with the path, the list in another order or lacking the other replica's writes, a
/// deletion that answers with a body, deleting another user's device, an event.
async fn each_platform_is_registered_listed_and_deleted(mut f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    f.heard().await;
    let voip = apns_token();
    let alert = apns_token().to_uppercase();
    let android = fcm_token();
    let browser = endpoint();
    let bodies = [
        json!({ "platform": "apns-voip", "token": voip, "name": "  Ana's iPhone  " }),
        json!({ "platform": "apns", "token": alert, "appId": TOPICS[1], "environment": "sandbox" }),
        json!({ "platform": "fcm", "token": android, "name": "Pixel", "appId": TOPICS[1], "environment": "sandbox",
                "subscription": subscription(&endpoint()) }),
        json!({ "platform": "webpush", "subscription": subscription(&browser), "name": "Firefox", "token": apns_token(),
                "appId": TOPICS[0], "environment": "production" }),
    ];
    let all_secrets: Vec<String> = bodies.iter().flat_map(secrets).collect();
    // (appId, environment, name, tokenSuffix, endpointOrigin) each must get.
    let expected = [
        (json!(TOPICS[0]), json!("production"), json!("Ana's iPhone"), json!(voip[60..]), Value::Null),
        (json!(TOPICS[1]), json!("sandbox"), Value::Null, json!(alert[60..].to_lowercase()), Value::Null),
        (Value::Null, Value::Null, json!("Pixel"), json!(android[android.len() - 4..]), Value::Null),
        (Value::Null, Value::Null, json!("Firefox"), Value::Null, json!("https://push.example.com")),
    ];
    let mut devices = Vec::new();
    for (n, (body, want)) in bodies.iter().zip(&expected).enumerate() {
        let (status, device, raw) = register(f.api(n), &ana, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body} → {raw}");
        assert_device(&device, &ana, text(&body["platform"]));
        let got = (&device["appId"], &device["environment"], &device["name"], &device["tokenSuffix"]);
        assert_eq!(got, (&want.0, &want.1, &want.2, &want.3), "{body} → {device}");
        assert_eq!(device["endpointOrigin"], want.4, "{device}");
        assert_hidden(&raw, &all_secrets, "POST /users/:id/devices");
        let age = chrono::Utc::now().timestamp_millis() - millis(&device["createdAt"]);
        assert!((0..WAIT.as_millis() as i64).contains(&age), "created now: {device}");
        devices.push(device);
    }
    for n in 0..2 {
        let (listed, raw) = list(f.api(n), &ana).await;
        assert_eq!(listed, devices, "replica {n} lists the devices as registered, oldest first");
        assert_hidden(&raw, &all_secrets, "GET /users/:id/devices");
        for path in [format!("/users/{ana}"), "/users".to_owned()] {
            let (status, raw) = get_raw(f.api(n), &path).await;
            assert_eq!(status, StatusCode::OK, "{raw}");
            assert_hidden(&raw, &all_secrets, &path);
        }
    }
    assert_eq!(f.listed(1, &ben).await, Vec::<String>::new(), "Ben has no device");

    let gone = id(&devices[2]).to_owned();
    assert_eq!(delete(f.api(0), &ana, &gone).await, (StatusCode::NO_CONTENT, String::new()), "204, no body");
    let left: Vec<String> = ids(&devices).into_iter().filter(|d| *d != gone).collect();
    assert_eq!(f.listed(1, &ana).await, left);
    let (status, raw) = delete(f.api(1), &ana, &gone).await;
    assert_problem(status, &problem(&raw), 404, "device_not_found");
    for unknown in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let (status, raw) = delete(f.api(0), &ana, &unknown).await;
        assert_problem(status, &problem(&raw), 404, "device_not_found");
    }
    let bens = f.device(1, &ben, &fcm(&fcm_token()), StatusCode::CREATED).await;
    let (status, raw) = delete(f.api(0), &ana, id(&bens)).await;
    assert_problem(status, &problem(&raw), 404, "device_not_found");
    assert_eq!(f.listed(1, &ben).await, vec![id(&bens).to_owned()], "another user's device stays");
    assert_eq!(f.listed(0, &ana).await, left);

    for ghost in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let (status, body, _) = register(f.api(0), &ghost, &fcm(&fcm_token())).await;
        assert_problem(status, &body, 404, "user_not_found");
        let (status, raw) = get_raw(f.api(1), &format!("/users/{ghost}/devices")).await;
        assert_problem(status, &problem(&raw), 404, "user_not_found");
        let (status, raw) = delete(f.api(0), &ghost, id(&devices[0])).await;
        assert_problem(status, &problem(&raw), 404, "user_not_found");
    }
    assert_eq!(f.listed(0, &ana).await, left, "refused requests changed nothing");
    assert!(f.heard().await.is_empty(), "devices are not announced");
}

/// The same registration again (the same platform and token, an APNs token in another
/// case, the same Web Push endpoint with new keys) is 200 with the same `id` and
/// `createdAt`, a later `updatedAt`, and `name`, `appId` and `environment` replaced; the
/// same token under another platform is another device; registered for another user it
/// moves (201, a new id) and leaves the first user's list. Breaks it: a second device for
/// one token, a token compared in the case it was sent, `updatedAt` not refreshed, the
/// old name or app kept, the list re-sorted by `updatedAt`, the id carried over to the new
/// owner, a token left with two users.
async fn registering_again_refreshes_and_another_user_takes_it_over(mut f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    f.heard().await;
    let token = apns_token();
    let first = json!({ "platform": "apns-voip", "token": token, "name": "Old", "appId": TOPICS[1],
                        "environment": "sandbox" });
    let d1 = f.device(0, &ana, &first, StatusCode::CREATED).await;
    let browser = endpoint();
    let w1 = f.device(1, &ana, &webpush(&browser), StatusCode::CREATED).await;
    let android = fcm_token();
    let a1 = f.device(0, &ana, &fcm(&android), StatusCode::CREATED).await;

    clock_past(millis(&a1["updatedAt"])).await;
    let again = json!({ "platform": "apns-voip", "token": token.to_uppercase(), "name": "New", "appId": TOPICS[0],
                        "environment": "production" });
    let (status, d2, raw) = register(f.api(1), &ana, &again).await;
    assert_eq!(status, StatusCode::OK, "the same token in capitals is the same registration: {raw}");
    assert_hidden(&raw, &secrets(&again), "a refresh");
    assert_device(&d2, &ana, "apns-voip");
    assert_eq!((&d2["id"], &d2["createdAt"], &d2["tokenSuffix"]), (&d1["id"], &d1["createdAt"], &d1["tokenSuffix"]));
    assert!(millis(&d2["updatedAt"]) > millis(&a1["updatedAt"]), "updatedAt refreshed: {d1} then {d2}");
    assert_eq!((text(&d2["name"]), text(&d2["appId"]), text(&d2["environment"])), ("New", TOPICS[0], "production"));
    // A registration without the optional fields replaces them with their defaults.
    let bare = f.device(0, &ana, &apns("apns-voip", &token), StatusCode::OK).await;
    assert_eq!(id(&bare), id(&d1));
    assert_eq!(
        (&bare["name"], text(&bare["appId"]), text(&bare["environment"])),
        (&Value::Null, TOPICS[0], "production")
    );

    clock_past(millis(&bare["updatedAt"])).await;
    let renewed = json!({ "platform": "webpush", "subscription": subscription(&browser), "name": "Firefox" });
    let w2 = f.device(1, &ana, &renewed, StatusCode::OK).await;
    assert_eq!((&w2["id"], &w2["createdAt"], text(&w2["name"])), (&w1["id"], &w1["createdAt"], "Firefox"));
    assert!(millis(&w2["updatedAt"]) > millis(&w1["updatedAt"]), "{w1} then {w2}");
    let a2 = f.device(0, &ana, &fcm(&android), StatusCode::OK).await;
    assert_eq!(id(&a2), id(&a1));
    // The list keeps the order of creation, whatever was refreshed since.
    assert_eq!(f.listed(1, &ana).await, ids(&[d1.clone(), w1.clone(), a1.clone()]));

    // The same token is another registration under the other APNs platform.
    let alert = f.device(1, &ana, &apns("apns", &token), StatusCode::CREATED).await;
    assert_ne!(id(&alert), id(&d1));
    assert_eq!(f.listed(0, &ana).await, ids(&[d1.clone(), w1.clone(), a1.clone(), alert.clone()]));

    // Moving: Ben takes the VoIP token, the endpoint and the FCM token.
    let moved = [
        f.device(0, &ben, &apns("apns-voip", &token.to_uppercase()), StatusCode::CREATED).await,
        f.device(1, &ben, &webpush(&browser), StatusCode::CREATED).await,
        f.device(0, &ben, &fcm(&android), StatusCode::CREATED).await,
    ];
    for (to_ben, from_ana) in moved.iter().zip([&d1, &w1, &a1]) {
        assert_device(to_ben, &ben, text(&from_ana["platform"]));
        assert_ne!(id(to_ben), id(from_ana), "the new owner gets a new id");
        let (status, raw) = delete(f.api(1), &ana, id(from_ana)).await;
        assert_problem(status, &problem(&raw), 404, "device_not_found");
    }
    assert_eq!(f.listed(1, &ana).await, vec![id(&alert).to_owned()], "only the APNs alert device stays with Ana");
    assert_eq!(f.listed(0, &ben).await, ids(&moved));

    // And back: Ana gets yet another id, Ben loses it.
    let back = f.device(1, &ana, &apns("apns-voip", &token), StatusCode::CREATED).await;
    assert!(![id(&d1), id(&moved[0])].contains(&id(&back)), "a new id: {back}");
    assert_eq!(f.listed(0, &ana).await, ids(&[alert, back]));
    assert_eq!(f.listed(1, &ben).await, ids(&moved[1..]));
    assert!(f.heard().await.is_empty(), "devices are not announced");
}

/// The same registration raced from both replicas: for two users, exactly one of them
/// ends up with it; for one user, one device (one 201 and one 200). Ten times each.
/// Breaks it: a check-then-write that is not atomic (two owners, or two devices for one
/// token), a move that deletes the device the other request has just made.
async fn a_raced_registration_has_one_owner(f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    for n in 0..10 {
        let body = if n % 2 == 0 { apns("apns-voip", &apns_token()) } else { webpush(&endpoint()) };
        let ((sa, da, _), (sb, db, _)) = tokio::join!(register(f.api(0), &ana, &body), register(f.api(1), &ben, &body));
        assert_eq!((sa, sb), (StatusCode::CREATED, StatusCode::CREATED), "try {n}: {da} {db}");
        let with_ana = f.listed(n, &ana).await.contains(&id(&da).to_owned());
        let with_ben = f.listed(n + 1, &ben).await.contains(&id(&db).to_owned());
        assert!(with_ana != with_ben, "try {n}: one owner, not {}", if with_ana { "two" } else { "none" });
    }
    let cat = f.user(0, "Cat").await;
    for n in 0..10 {
        let body = if n % 2 == 0 { fcm(&fcm_token()) } else { webpush(&endpoint()) };
        let ((sa, da, _), (sb, db, _)) = tokio::join!(register(f.api(0), &cat, &body), register(f.api(1), &cat, &body));
        let mut statuses = [sa.as_u16(), sb.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "try {n}: one new, one again: {da} {db}");
        assert_eq!(id(&da), id(&db), "try {n}");
        let listed = f.listed(n, &cat).await;
        assert_eq!(listed.iter().filter(|d| d.as_str() == id(&da)).count(), 1, "try {n}: {listed:?}");
    }
}

/// A user keeps at most `PUSH_MAX_DEVICES` devices: each registration beyond removes the
/// device updated longest ago (not the one created first: a refresh keeps a device), a
/// refresh at the limit removes nothing, a device moved in counts, other users are not
/// touched, and a burst of concurrent registrations still leaves exactly the limit.
/// Breaks it: no limit, evicting by `createdAt`, evicting the newest, an off-by-one, a
/// limit shared between users, a count checked outside the write (a burst overshoots).
async fn beyond_the_limit_the_device_updated_longest_ago_leaves(f: Fixture) {
    let limit = f.limit;
    let (ana, ben, cat) = (f.user(0, "Ana").await, f.user(1, "Ben").await, f.user(0, "Cat").await);
    let bens_token = fcm_token();
    let bens = f.device(1, &ben, &fcm(&bens_token), StatusCode::CREATED).await;
    // What Ana should have: (id, createdAt, updatedAt), as the server stamped them.
    let mut model: Vec<(String, i64, i64)> = Vec::new();
    let mut evicted: Vec<String> = Vec::new();
    let mut last = millis(&bens["updatedAt"]);
    let mut tokens = Vec::new();
    let mut first = String::new();
    let steps = std::iter::repeat_n("new", limit).chain(["refresh first", "new", "new", "refresh newest", "move"]);
    for (step, kind) in steps.enumerate() {
        // Strictly increasing stamps: "the oldest updatedAt" is never a tie.
        clock_past(last).await;
        let (body, expected) = match kind {
            "new" => {
                let token = if step % 3 == 0 { apns_token() } else { fcm_token() };
                let body = if step % 3 == 0 { apns("apns", &token) } else { fcm(&token) };
                tokens.push(body.clone());
                (body, StatusCode::CREATED)
            }
            "refresh first" => (tokens[0].clone(), StatusCode::OK),
            "refresh newest" => (tokens[tokens.len() - 1].clone(), StatusCode::OK),
            _ => (fcm(&bens_token), StatusCode::CREATED),
        };
        let device = f.device(step, &ana, &body, expected).await;
        last = millis(&device["updatedAt"]);
        if step == 0 {
            first = id(&device).to_owned();
        }
        match model.iter_mut().find(|d| d.0 == id(&device)) {
            Some(known) => known.2 = last,
            None => model.push((id(&device).to_owned(), millis(&device["createdAt"]), last)),
        }
        if model.len() > limit {
            let oldest = model.iter().enumerate().min_by_key(|(_, d)| d.2).map(|(i, _)| i).unwrap_or_default();
            evicted.push(model.remove(oldest).0);
        }
        let mut expected_ids = model.clone();
        expected_ids.sort_by_key(|d| d.1);
        let expected_ids: Vec<String> = expected_ids.into_iter().map(|d| d.0).collect();
        assert_eq!(f.listed(step + 1, &ana).await, expected_ids, "after {kind} (step {step}), limit {limit}");
    }
    assert_eq!(evicted.len(), 3, "two new registrations and a move beyond the limit");
    assert_ne!(evicted[0], first, "the first device, created first but refreshed since, is not the first to go");
    for gone in &evicted {
        let (status, raw) = delete(f.api(0), &ana, gone).await;
        assert_problem(status, &problem(&raw), 404, "device_not_found");
    }
    assert_eq!(f.listed(0, &ben).await, Vec::<String>::new(), "Ben's device moved to Ana");

    let mut bens = Vec::new();
    for n in 0..limit {
        bens.push(id(&f.device(n, &ben, &fcm(&fcm_token()), StatusCode::CREATED).await).to_owned());
    }
    assert_eq!(f.listed(1, &ben).await, bens, "Ben's limit is his own");
    assert_eq!(f.listed(0, &ana).await.len(), limit, "Ana's devices are untouched");

    let burst = (0..2 * limit).map(|n| {
        let api = f.api(n).clone();
        let cat = cat.clone();
        async move { register(&api, &cat, &fcm(&fcm_token())).await }
    });
    let made: Vec<String> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|(status, device, raw)| {
            assert_eq!(status, StatusCode::CREATED, "{raw}");
            id(&device).to_owned()
        })
        .collect();
    let kept = f.listed(1, &cat).await;
    assert_eq!(kept.len(), limit, "a burst of {} registrations leaves the limit: {kept:?}", 2 * limit);
    assert!(kept.iter().all(|d| made.contains(d)), "{kept:?}");
}

// ---------------------------------------------------------------------------------------
// Validation

/// Every invalid field of a registration is a 422 `validation_failed` naming that field
/// (and only it); the body that is not an object is 400; none of them stores a device or
/// emits an event; the boundaries of each rule are accepted. Breaks it: an accepted token
/// of the wrong length, parity or alphabet; whitespace in an FCM token; an `http` endpoint
/// off loopback, a host outside `WEBPUSH_ALLOWED_HOSTS` (or one that only starts or ends
/// like an allowed host), an endpoint too long; a `p256dh` that is not an uncompressed
/// point on P-256 or an `auth` not of 16 bytes; an `appId` outside `APNS_TOPIC`; an
/// unknown environment; a name a user could not have; an error naming another field; a
/// refused registration stored anyway; boundaries refused.
async fn invalid_fields_are_named_and_change_nothing(mut f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    let kept = f.device(0, &ana, &fcm(&fcm_token()), StatusCode::CREATED).await;
    f.heard().await;
    let point = B64URL.decode(P256DH).expect("base64url");
    let mut off_curve = point.clone();
    off_curve[64] ^= 1;
    let mut compressed = vec![2 + (point[64] & 1)];
    compressed.extend(&point[1..33]);
    let mut zeros = vec![4u8];
    zeros.extend([0u8; 64]);
    let keys =
        |p256dh: Value, auth: Value| json!({ "endpoint": endpoint(), "keys": { "p256dh": p256dh, "auth": auth } });
    let good_auth = || json!(auth_secret());
    let with_endpoint = |e: String| json!({ "platform": "webpush", "subscription": subscription(&e) });
    let voip = |extra: Value| {
        let mut body = apns("apns-voip", &apns_token());
        body.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        body
    };
    let too_long = format!("https://push.example.com/{}", "a".repeat(2049 - "https://push.example.com/".len()));
    let mut cases: Vec<(Value, &str)> = vec![
        (json!({ "token": apns_token() }), "platform"),
        (json!({ "platform": "apns-alert", "token": apns_token() }), "platform"),
        (json!({ "platform": "", "token": apns_token() }), "platform"),
        (json!({ "platform": 7, "token": apns_token() }), "platform"),
        (json!({ "platform": null, "token": apns_token() }), "platform"),
    ];
    for platform in ["apns-voip", "apns"] {
        let hex = |n: usize| "0123456789abcdef".repeat(13)[..n].to_owned();
        for token in [
            json!(null),
            json!(""),
            json!(hex(14)),
            json!(hex(202)),
            json!(hex(17)),
            json!(hex(63)),
            json!(format!("{}zz", hex(62))),
            json!(format!("{} {}", hex(31), hex(32))),
            json!(format!("<{}>", hex(64))),
            json!(1234567890123456u64),
            json!([hex(64)]),
        ] {
            let mut body = json!({ "platform": platform, "token": token });
            if token.is_null() {
                body.as_object_mut().expect("an object").remove("token");
            }
            cases.push((body, "token"));
        }
    }
    for token in [
        json!(""),
        json!("abc def"),
        json!("abc\tdef"),
        json!("abcdef\n"),
        json!(" abcdef"),
        json!("a".repeat(4097)),
        json!(12345),
        json!(null),
    ] {
        cases.push((json!({ "platform": "fcm", "token": token }), "token"));
    }
    cases.push((json!({ "platform": "fcm" }), "token"));
    cases.extend([
        (json!({ "platform": "webpush" }), "subscription"),
        (json!({ "platform": "webpush", "subscription": "https://push.example.com/x" }), "subscription"),
        (
            json!({ "platform": "webpush", "subscription": { "keys": { "p256dh": P256DH, "auth": auth_secret() } } }),
            "endpoint",
        ),
    ]);
    for bad in [
        "http://push.example.com/wpush/x",
        "ftp://push.example.com/wpush/x",
        "not a url",
        "https://evil.example.com/wpush/x",
        "https://sub.push.example.com/x",
        "https://push.example.com.evil.com/x",
        "https://evilpush.example.com/x",
        "https://127.0.0.2/x",
        "https:///x",
        "//push.example.com/x",
        &too_long,
    ] {
        cases.push((with_endpoint(bad.to_owned()), "endpoint"));
    }
    cases.push((json!({ "platform": "webpush", "subscription": { "endpoint": 7, "keys": { "p256dh": P256DH, "auth": auth_secret() } } }), "endpoint"));
    for p256dh in [
        json!(B64URL.encode(&off_curve)),
        json!(B64URL.encode(&compressed)),
        json!(B64URL.encode(&point[1..])),
        json!(B64URL.encode(&zeros)),
        json!(B64URL.encode([&point[..], &[0u8][..]].concat())),
        json!("!!not base64!!"),
        json!(""),
        json!(65),
        json!(null),
    ] {
        cases.push((json!({ "platform": "webpush", "subscription": keys(p256dh, good_auth()) }), "p256dh"));
    }
    for auth in [
        json!(B64URL.encode([7u8; 15])),
        json!(B64URL.encode([7u8; 17])),
        json!(""),
        json!("%%%%%%%%%%%%%%%%%%%%%%"),
        json!(16),
        json!(null),
    ] {
        cases.push((json!({ "platform": "webpush", "subscription": keys(json!(P256DH), auth) }), "auth"));
    }
    for app in [json!("com.example.other"), json!(""), json!("com.example.calls.voip"), json!(7)] {
        cases.push((voip(json!({ "appId": app })), "appId"));
        cases.push((json!({ "platform": "apns", "token": apns_token(), "appId": app }), "appId"));
    }
    for env in [json!("staging"), json!(""), json!("development"), json!(1)] {
        cases.push((voip(json!({ "environment": env })), "environment"));
    }
    for name in [
        json!(""),
        json!("   "),
        json!("x".repeat(101)),
        json!("a\u{7}b"),
        json!("\u{200B}\u{2060}"),
        json!("\u{202E}abc"),
        json!("\u{3164}"),
        json!(7),
    ] {
        cases.push((voip(json!({ "name": name })), "name"));
        cases.push((json!({ "platform": "webpush", "subscription": subscription(&endpoint()), "name": name }), "name"));
    }
    for (n, (body, field)) in cases.iter().enumerate() {
        let (status, problem, raw) = register(f.api(n), &ana, body).await;
        assert_problem(status, &problem, 422, "validation_failed");
        if *field == "subscription" {
            // A subscription missing or not an object: it, or the fields it lacks, named.
            let fields = error_fields(&problem);
            assert!(!fields.is_empty() && fields.iter().all(|f| f.starts_with("subscription")), "{body} → {problem}");
        } else {
            assert_eq!(error_leaves(&problem), vec![field.to_owned()], "{body} → {problem}");
        }
        assert!(problem["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{problem}");
        assert_hidden(&raw, &secrets(body).into_iter().filter(|s| s.len() >= 16).collect::<Vec<_>>(), "a refusal");
    }
    for (n, bad) in ["[]", "\"apns\"", "{\"platform\": ", "null"].into_iter().enumerate() {
        let res =
            f.api(n).raw(Method::POST, &format!("/users/{ana}/devices")).header("content-type", "application/json");
        let res = res.body(bad).send().await.expect("sent");
        let status = res.status();
        assert_problem(status, &res.json().await.expect("a problem"), 400, "invalid_json");
    }
    assert_eq!(f.listed(1, &ana).await, vec![id(&kept).to_owned()], "refusals stored nothing");
    assert!(f.heard().await.is_empty(), "refusals announce nothing");

    // The boundaries, accepted (for Ben: more devices than the limit would evict).
    let loopback = f.base(0).to_owned();
    let exactly_long = format!("https://push.example.com/{}", "b".repeat(2048 - "https://push.example.com/".len()));
    let sub = |endpoint: &str, p256dh: &str, auth: &str| json!({ "platform": "webpush", "subscription": { "endpoint": endpoint, "keys": { "p256dh": p256dh, "auth": auth } } });
    let padded_auth = format!("{}==", auth_secret());
    let accepted = [
        (apns("apns-voip", &apns_token()[..16]), None),
        (apns("apns", &format!("{}{}{}{}", apns_token(), apns_token(), apns_token(), apns_token())[..200]), None),
        (apns("apns-voip", &apns_token().to_uppercase()), None),
        (fcm(&"f".repeat(4096)), None),
        (sub(&exactly_long, &format!("{P256DH}="), &padded_auth), Some("https://push.example.com".to_owned())),
        (
            sub(&format!("{loopback}/push/{}", uuid::Uuid::new_v4().simple()), P256DH, &auth_secret()),
            Some(loopback.clone()),
        ),
        (
            sub(&format!("https://push.example.com:8443/p/{}", uuid::Uuid::new_v4().simple()), P256DH, &auth_secret()),
            Some("https://push.example.com:8443".to_owned()),
        ),
        (json!({ "platform": "fcm", "token": fcm_token(), "name": "é".repeat(100) }), None),
        (json!({ "platform": "apns", "token": apns_token(), "appId": TOPICS[1], "environment": "sandbox" }), None),
    ];
    for (n, (body, origin)) in accepted.iter().enumerate() {
        let (status, device, raw) = register(f.api(n), &ben, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body} → {raw}");
        assert_device(&device, &ben, text(&body["platform"]));
        if let Some(token) = body["token"].as_str() {
            let suffix = token[token.len() - 4..].to_owned();
            let stored = if body["platform"] == "fcm" { suffix } else { suffix.to_lowercase() };
            assert_eq!(text(&device["tokenSuffix"]), stored, "{device}");
        }
        assert_eq!(device["endpointOrigin"], origin.as_ref().map_or(Value::Null, |o| json!(o)), "{device}");
        assert_hidden(&raw, &secrets(body), "an accepted registration");
    }
    assert_eq!(f.listed(0, &ben).await.len(), accepted.len());
}

// ---------------------------------------------------------------------------------------
// Configuration

/// `/push/config` with every provider on: the four platforms in the contract's order, the
/// public key of `vapid.pem` (65 bytes, base64url) and the `APNS_TOPIC` list, on every
/// replica. Breaks it: another order, a key derived wrongly (compressed, the private key,
/// padded base64 of another alphabet), the topics lost or reordered, extra fields.
async fn push_config_describes_what_is_enabled(f: Fixture) {
    for n in 0..2 {
        let (status, config) = f.api(n).get("/push/config").await;
        assert_eq!(status, StatusCode::OK, "{config}");
        assert_config(&config, &["apns-voip", "apns", "fcm", "webpush"], Some(VAPID_PUBLIC), &TOPICS);
    }
}

fn assert_config(config: &Value, platforms: &[&str], vapid: Option<&str>, app_ids: &[&str]) {
    let fields: BTreeSet<&str> = config.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["platforms", "vapidPublicKey", "apnsAppIds"]), "{config}");
    assert_eq!(config["platforms"], json!(platforms), "{config}");
    assert_eq!(config["apnsAppIds"], json!(app_ids), "{config}");
    match vapid {
        None => assert_eq!(config["vapidPublicKey"], Value::Null, "{config}"),
        Some(expected) => {
            let served = text(&config["vapidPublicKey"]);
            assert!(!served.contains(['+', '/']), "base64url: {served}");
            let served = B64URL.decode(served.trim_end_matches('=')).expect("base64url");
            assert_eq!(served.len(), 65, "an uncompressed point");
            assert_eq!(served, B64URL.decode(expected.trim()).expect("the fixture"), "the public key of vapid.pem");
        }
    }
}

type Strs = &'static [&'static str];

/// Each provider alone enables exactly its platforms (in `/push/config` and at
/// registration); with none, every platform is refused with 422 on `platform`. Breaks it:
/// a platform accepted without its credentials (a push that could never be sent), APNs
/// enabling only one of its two platforms, a VAPID key served with Web Push off.
#[tokio::test]
async fn each_provider_enables_only_its_platforms() {
    let setups: [(Strs, Strs, Option<&str>, Strs); 4] = [
        (&[], &[], None, &[]),
        (&APNS_FLAGS, &["apns-voip", "apns"], None, &TOPICS),
        (&FCM_FLAGS, &["fcm"], None, &[]),
        (&VAPID_FLAGS, &["webpush"], Some(VAPID_PUBLIC), &[]),
    ];
    for (flags, enabled, vapid, app_ids) in setups {
        let app = TestApp::with_flags(None, "unused", &[flags, &HOSTS_FLAGS].concat()).await;
        let (status, config) = app.api.get("/push/config").await;
        assert_eq!(status, StatusCode::OK, "{config}");
        assert_config(&config, enabled, vapid, app_ids);
        let ana = app.api.user("Ana").await;
        let bodies =
            [apns("apns-voip", &apns_token()), apns("apns", &apns_token()), fcm(&fcm_token()), webpush(&endpoint())];
        for body in bodies {
            let (status, device, _) = register(&app.api, &ana, &body).await;
            if enabled.contains(&text(&body["platform"])) {
                assert_eq!(status, StatusCode::CREATED, "{flags:?}: {device}");
            } else {
                assert_problem(status, &device, 422, "validation_failed");
                assert_eq!(error_leaves(&device), vec!["platform"], "{flags:?}: {device}");
            }
        }
    }
}

/// `WEBPUSH_ALLOWED_HOSTS`: by default the browsers' push services (a `*.` entry matching
/// any subdomain, the others only themselves); `*` alone any host, yet `http` only on
/// loopback; a `*.` entry of one's own. Breaks it: suffix matching without the dot
/// (`evilnotify.windows.com`), exact entries matching subdomains, `*` lifting the `https`
/// rule, loopback allowed when the list does not name it.
#[tokio::test]
async fn endpoints_must_name_an_allowed_host() {
    let setups: [(Strs, Strs, Strs); 3] = [
        (
            &[],
            &[
                "https://fcm.googleapis.com/fcm/send/x",
                "https://updates.push.services.mozilla.com/wpush/v2/x",
                "https://web.push.apple.com/QGx",
                "https://wns2-par02p.notify.windows.com/w/?token=x",
                "https://a.b.notify.windows.com/w/?token=x",
            ],
            &[
                "https://push.example.com/x",
                "https://sub.fcm.googleapis.com/fcm/send/x",
                "https://evilnotify.windows.com/w/x",
                "https://notify.windows.com.evil.example/w/x",
                "http://127.0.0.1:1/x",
                "http://fcm.googleapis.com/fcm/send/x",
            ],
        ),
        (
            &["--webpush-allowed-hosts", "*"],
            &["https://anything.example/x", "https://push.example.com:4443/x", "http://127.0.0.1:1/x"],
            &["http://anything.example/x", "ws://anything.example/x"],
        ),
        (
            &["--webpush-allowed-hosts", "*.example.net,push.example.com"],
            &["https://a.example.net/x", "https://a.b.example.net/x", "https://push.example.com/x"],
            &["https://badexample.net/x", "https://example.org/x", "https://a.push.example.com/x"],
        ),
    ];
    for (hosts, allowed, refused) in setups {
        let app = TestApp::with_flags(None, "unused", &[&VAPID_FLAGS[..], hosts].concat()).await;
        let ana = app.api.user("Ana").await;
        for endpoint in allowed {
            let (status, device, _) = register(&app.api, &ana, &webpush(endpoint)).await;
            assert_eq!(status, StatusCode::CREATED, "{hosts:?} allows {endpoint}: {device}");
        }
        for endpoint in refused {
            let (status, device, _) = register(&app.api, &ana, &webpush(endpoint)).await;
            assert_problem(status, &device, 422, "validation_failed");
            assert_eq!(error_leaves(&device), vec!["endpoint"], "{hosts:?} refuses {endpoint}: {device}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Who may

/// `AUTH=token`: every device endpoint and `/push/config` need a bearer token (401 with
/// `WWW-Authenticate: Bearer`); a user manages only their own devices (403 `forbidden` on
/// another's, whose devices stay), a server token anyone's. Breaks it: an open device
/// endpoint, a user listing or deleting another user's devices, a server token refused.
async fn devices_need_a_token_and_belong_to_their_user(f: Fixture) {
    let (ana, ana_api) = f.person(0, "Ana").await;
    let (ben, ben_api) = f.person(1, "Ben").await;
    let bens = f.device(0, &ben, &fcm(&fcm_token()), StatusCode::CREATED).await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let requests = |user: &str, device: &str| {
        vec![
            (Method::POST, format!("/users/{user}/devices"), Some(fcm(&fcm_token()))),
            (Method::GET, format!("/users/{user}/devices"), None),
            (Method::DELETE, format!("/users/{user}/devices/{device}"), None),
        ]
    };
    let unsigned = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": ana, "exp": chrono::Utc::now().timestamp() + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
    )
    .expect("signs");
    for n in 0..2 {
        let anonymous = Api::new(f.base(n));
        for api in [anonymous.clone(), anonymous.bearer("not-a-jwt"), anonymous.bearer(&unsigned)] {
            let mut all = requests(&ana, &ghost);
            all.push((Method::GET, "/push/config".to_owned(), None));
            for (method, path, body) in all {
                let mut req = api.raw(method.clone(), &path);
                if let Some(body) = body {
                    req = req.json(&body);
                }
                let res = req.send().await.expect("sent");
                let challenge = res.headers().get("www-authenticate").map(|v| v.as_bytes().to_vec());
                assert_eq!(challenge.as_deref(), Some(&b"Bearer"[..]), "{method} {path}");
                let status = res.status();
                assert_problem(status, &res.json().await.expect("a problem"), 401, "unauthorized");
            }
        }
    }
    let (status, config) = ana_api.get("/push/config").await;
    assert_eq!(status, StatusCode::OK, "a user may read the push config: {config}");

    for (method, path, body) in requests(&ben, id(&bens)) {
        let (status, problem) = ana_api.send(method.clone(), &path, body).await;
        assert_problem(status, &problem, 403, "forbidden");
    }
    assert_eq!(ids(&list(&ben_api, &ben).await.0), vec![id(&bens).to_owned()], "Ben's device stays");

    let own = f.device(0, &ana, &fcm(&fcm_token()), StatusCode::CREATED).await;
    let (status, mine, _) = register(&ana_api, &ana, &apns("apns-voip", &apns_token())).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    assert_eq!(ids(&list(&ana_api, &ana).await.0), ids(&[own.clone(), mine.clone()]));
    let (status, raw) = delete(&ana_api, &ana, id(&bens)).await;
    assert_problem(status, &problem(&raw), 404, "device_not_found");
    assert_eq!(delete(&ana_api, &ana, id(&mine)).await, (StatusCode::NO_CONTENT, String::new()));
    // The server token deletes anyone's.
    assert_eq!(delete(f.api(1), &ana, id(&own)).await, (StatusCode::NO_CONTENT, String::new()));
    assert_eq!(delete(f.api(0), &ben, id(&bens)).await, (StatusCode::NO_CONTENT, String::new()));
    assert_eq!(ids(&list(&ana_api, &ana).await.0), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Erasure

/// Erasing a user deletes their devices with them: on every replica the user's device
/// endpoints answer 404 `user_not_found`, other users' devices stay, the erased user's
/// tokens and endpoint register anew for another user as new devices, and the erasure
/// announces only `user.deleted`. (That nothing of the devices stays in the store is
/// `no_key_keeps_an_erased_or_deleted_device`, on Redis.) Breaks it: device endpoints that
/// still answer for an erased user, an erasure that takes other users' devices or fails
/// on a user with devices, a device id carried over.
async fn erasing_a_user_deletes_their_devices(mut f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    let bodies =
        [apns("apns-voip", &apns_token()), apns("apns", &apns_token()), fcm(&fcm_token()), webpush(&endpoint())];
    let mut anas = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        anas.push(f.device(n, &ana, body, StatusCode::CREATED).await);
    }
    let bens = f.device(0, &ben, &webpush(&endpoint()), StatusCode::CREATED).await;
    f.heard().await;

    let res = f.api(1).raw(Method::DELETE, &format!("/users/{ana}")).send().await.expect("sent");
    assert_eq!((res.status(), res.text().await.expect("a body")), (StatusCode::NO_CONTENT, String::new()));
    for n in 0..2 {
        let (status, raw) = get_raw(f.api(n), &format!("/users/{ana}/devices")).await;
        assert_problem(status, &problem(&raw), 404, "user_not_found");
        let (status, raw) = delete(f.api(n), &ana, id(&anas[n])).await;
        assert_problem(status, &problem(&raw), 404, "user_not_found");
        let (status, body, _) = register(f.api(n), &ana, &bodies[n]).await;
        assert_problem(status, &body, 404, "user_not_found");
        assert_eq!(f.listed(n, &ben).await, vec![id(&bens).to_owned()], "Ben's device stays");
    }
    let old: Vec<String> = ids(&anas);
    for (n, body) in bodies.iter().enumerate() {
        let again = f.device(n, &ben, body, StatusCode::CREATED).await;
        assert!(!old.contains(&id(&again).to_owned()), "a new device, not Ana's: {again}");
    }
    assert_eq!(f.listed(1, &ben).await.len(), 1 + bodies.len());
    assert_eq!(f.heard().await, vec![("user.deleted".to_owned(), json!({ "data": { "id": ana } }))]);
}

/// The keys of the namespace whose name or content holds one of `tracked`, each with the
/// first one it holds; for `tracked` ids of erased users, the event log aside (its
/// `user.deleted` names them).
fn holding(port: u16, tracked: &[String], skip_log: bool) -> Vec<String> {
    let prefix = format!("{{{NS}}}:");
    let mut found = Vec::new();
    for key in keyspace(port, &format!("{prefix}*")) {
        let local = key.name.strip_prefix(&prefix).unwrap_or(&key.name);
        if skip_log && (local == "log" || local == "log:last" || local.starts_with("delivery:")) {
            continue;
        }
        for content in std::iter::once(&key.name).chain(&key.content) {
            if let Some(t) = tracked.iter().find(|t| content.contains(t.as_str())) {
                found.push(format!("{} holds {t}: {content}", key.name));
            }
        }
    }
    found
}

/// On Redis, once a user is erased no key of the namespace names any of their devices or
/// holds any of their tokens, endpoints or keys (nor their id, the event log aside); a
/// device deleted on its own leaves nothing either, and a moved device's old id is gone.
/// Device registrations put nothing in the event log. Breaks it: a per-user device index,
/// a token → device pointer or a device document forgotten by the erasure or the
/// deletion; a tombstone keeping a token; a device id or token in an event.
#[tokio::test]
async fn no_key_keeps_an_erased_or_deleted_device() {
    let f = Fixture::new(Backend::Redis, &[]).await;
    let port = f.redis.as_ref().expect("Redis").port;
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    let bodies = [
        apns("apns-voip", &apns_token()),
        apns("apns", &apns_token().to_uppercase()),
        fcm(&fcm_token()),
        webpush(&endpoint()),
    ];
    let mut tracked: Vec<String> = Vec::new();
    let mut devices = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        let device = f.device(n, &ana, body, StatusCode::CREATED).await;
        tracked.push(id(&device).to_owned());
        tracked.extend(secrets(body));
        devices.push(device);
    }
    // Ben's device, deleted on its own; another moved from Ben to Ana (its old id tracked).
    let deleted_body = webpush(&endpoint());
    let deleted = f.device(1, &ben, &deleted_body, StatusCode::CREATED).await;
    let moved_body = fcm(&fcm_token());
    let moved_from = f.device(0, &ben, &moved_body, StatusCode::CREATED).await;
    f.device(1, &ana, &moved_body, StatusCode::CREATED).await;
    tracked.extend(secrets(&moved_body));
    tracked.push(id(&moved_from).to_owned());
    let held = holding(port, &tracked, false);
    assert!(held.iter().any(|h| h.contains(id(&devices[0]))), "the dump sees the devices: {held:?}");
    let (status, _) = delete(f.api(0), &ben, id(&deleted)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tracked.push(id(&deleted).to_owned());
    tracked.extend(secrets(&deleted_body));

    let res = f.api(1).raw(Method::DELETE, &format!("/users/{ana}")).send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let left = holding(port, &tracked, false);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    let left = holding(port, &[ana], true);
    assert!(left.is_empty(), "the erased user is still named:\n{}", left.join("\n"));
    assert_eq!(f.listed(0, &ben).await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Settings of the binary

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Every push setting of 10.6, as the environment names them.
const PUSH_ENV: [&str; 17] = [
    "APNS_KEY_FILE",
    "APNS_KEY_ID",
    "APNS_TEAM_ID",
    "APNS_TOPIC",
    "APNS_URL",
    "APNS_SANDBOX_URL",
    "FCM_SERVICE_ACCOUNT_FILE",
    "FCM_PROJECT_ID",
    "FCM_URL",
    "FCM_TOKEN_URL",
    "VAPID_PRIVATE_KEY_FILE",
    "VAPID_SUBJECT",
    "WEBPUSH_ALLOWED_HOSTS",
    "PUSH_CA_FILE",
    "PUSH_MAX_DEVICES",
    "PUSH_MAX_ATTEMPTS",
    "PUSH_REQUEST_TIMEOUT",
];

/// Every provider configured through the environment.
fn push_env() -> Vec<(&'static str, String)> {
    [
        ("APNS_KEY_FILE", APNS_KEY),
        ("APNS_KEY_ID", "KEY0000001"),
        ("APNS_TEAM_ID", "TEAM000001"),
        ("APNS_TOPIC", "com.example.calls"),
        ("APNS_URL", NOWHERE),
        ("APNS_SANDBOX_URL", NOWHERE),
        ("FCM_SERVICE_ACCOUNT_FILE", FCM_ACCOUNT),
        ("FCM_URL", NOWHERE),
        ("VAPID_PRIVATE_KEY_FILE", VAPID_KEY),
        ("VAPID_SUBJECT", "mailto:ops@example.com"),
    ]
    .map(|(k, v)| (k, v.to_owned()))
    .into()
}

/// Settings to change, each to a value or (`None`) unset.
type Changes = Vec<(&'static str, Option<String>)>;

/// `push_env` with `changes` (`None`: unset).
fn env_with(changes: &[(&'static str, Option<String>)]) -> Vec<(&'static str, String)> {
    let mut env = push_env();
    for (key, value) in changes {
        env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            env.push((key, value.clone()));
        }
    }
    env
}

/// The base64 lines of a PEM file: key material no output may show.
fn key_material(path: &str) -> Vec<String> {
    let pem = std::fs::read_to_string(path).expect("a fixture");
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).map(str::to_owned).collect()
}

/// Writes `contents` to a file of its own under the test's scratch directory.
fn scratch(name: &str, contents: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("devices-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("written");
    path.to_string_lossy().into_owned()
}

/// The service account of the fixtures with `field` removed or (`Some`) replaced.
fn account_with(field: &str, value: Option<Value>) -> String {
    let mut account: Value =
        serde_json::from_str(&std::fs::read_to_string(FCM_ACCOUNT).expect("a fixture")).expect("JSON");
    let object = account.as_object_mut().expect("an object");
    match value {
        Some(value) => object.insert(field.to_owned(), value),
        None => object.remove(field),
    };
    scratch("service-account.json", &account.to_string())
}

/// Settings that cannot work stop the binary at once with status 2 and a message naming
/// the setting, showing no key material; the same providers configured rightly through
/// the environment start and serve `/push/config` (boundaries included), printing no key
/// either. Breaks it: a key checked only at the first push (a replica that starts and can
/// never push), a missing companion setting or a bad id length accepted, a subject that
/// is neither `mailto:` nor `https:`, a limit outside 1–100 (attempts 1–20) accepted, a
/// message that does not say which setting, a key printed in an error or a log.
#[tokio::test]
async fn push_settings_that_cannot_work_stop_the_binary_with_status_2() {
    let some = |v: &str| Some(v.to_owned());
    let material: Vec<String> = [APNS_KEY, VAPID_KEY, WRONG_KIND_KEY].into_iter().flat_map(key_material).collect();
    let account: Value = serde_json::from_str(&std::fs::read_to_string(FCM_ACCOUNT).expect("a fixture")).expect("JSON");
    let rsa_material: Vec<String> = text(&account["private_key"])
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect();
    let ec_key = std::fs::read_to_string(APNS_KEY).expect("a fixture");
    let cases: Vec<(Changes, &str)> = vec![
        (vec![("APNS_KEY_FILE", some("/nonexistent/apns.p8"))], "APNS_KEY_FILE"),
        (vec![("APNS_KEY_FILE", some(WRONG_KIND_KEY))], "APNS_KEY_FILE"),
        (vec![("APNS_KEY_FILE", some(FCM_ACCOUNT))], "APNS_KEY_FILE"),
        (vec![("APNS_KEY_FILE", some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/push")))], "APNS_KEY_FILE"),
        (vec![("APNS_KEY_ID", some("KEY000001"))], "APNS_KEY_ID"),
        (vec![("APNS_KEY_ID", some("KEY00000001"))], "APNS_KEY_ID"),
        (vec![("APNS_KEY_ID", None)], "APNS_KEY_ID"),
        (vec![("APNS_TEAM_ID", None)], "APNS_TEAM_ID"),
        (vec![("APNS_TEAM_ID", some("TEAM1"))], "APNS_TEAM_ID"),
        (vec![("APNS_TOPIC", None)], "APNS_TOPIC"),
        (vec![("APNS_URL", some("not a url"))], "APNS_URL"),
        (vec![("APNS_SANDBOX_URL", some("api.sandbox.push.apple.com"))], "APNS_SANDBOX_URL"),
        (vec![("FCM_SERVICE_ACCOUNT_FILE", some("/nonexistent/account.json"))], "FCM_SERVICE_ACCOUNT_FILE"),
        (vec![("FCM_SERVICE_ACCOUNT_FILE", some(APNS_KEY))], "FCM_SERVICE_ACCOUNT_FILE"),
        (vec![("FCM_SERVICE_ACCOUNT_FILE", some(&account_with("client_email", None)))], "FCM_SERVICE_ACCOUNT_FILE"),
        (vec![("FCM_SERVICE_ACCOUNT_FILE", some(&account_with("private_key", None)))], "FCM_SERVICE_ACCOUNT_FILE"),
        (
            vec![(
                "FCM_SERVICE_ACCOUNT_FILE",
                some(&account_with(
                    "private_key",
                    Some(json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
                )),
            )],
            "FCM_SERVICE_ACCOUNT_FILE",
        ),
        (
            vec![("FCM_SERVICE_ACCOUNT_FILE", some(&account_with("private_key", Some(json!(ec_key)))))],
            "FCM_SERVICE_ACCOUNT_FILE",
        ),
        (
            vec![("FCM_SERVICE_ACCOUNT_FILE", some(&account_with("project_id", None)))],
            "FCM_SERVICE_ACCOUNT_FILE|FCM_PROJECT_ID",
        ),
        (vec![("FCM_URL", some("fcm.googleapis.com"))], "FCM_URL"),
        (vec![("FCM_TOKEN_URL", some("not a url"))], "FCM_TOKEN_URL"),
        (vec![("VAPID_SUBJECT", None)], "VAPID_SUBJECT"),
        (vec![("VAPID_SUBJECT", some("ops@example.com"))], "VAPID_SUBJECT"),
        (vec![("VAPID_SUBJECT", some("http://example.com/contact"))], "VAPID_SUBJECT"),
        (vec![("VAPID_PRIVATE_KEY_FILE", some(WRONG_KIND_KEY))], "VAPID_PRIVATE_KEY_FILE"),
        (vec![("VAPID_PRIVATE_KEY_FILE", some("/nonexistent/vapid.pem"))], "VAPID_PRIVATE_KEY_FILE"),
        (vec![("PUSH_MAX_DEVICES", some("0"))], "PUSH_MAX_DEVICES"),
        (vec![("PUSH_MAX_DEVICES", some("101"))], "PUSH_MAX_DEVICES"),
        (vec![("PUSH_MAX_DEVICES", some("ten"))], "PUSH_MAX_DEVICES"),
        (vec![("PUSH_MAX_ATTEMPTS", some("0"))], "PUSH_MAX_ATTEMPTS"),
        (vec![("PUSH_MAX_ATTEMPTS", some("21"))], "PUSH_MAX_ATTEMPTS"),
    ];
    let runs = cases.iter().map(|(changes, names)| {
        let env = env_with(changes);
        async move {
            let mut cmd = tokio::process::Command::new(BIN);
            cmd.args(["--host", "127.0.0.1", "--port", "0"]).env_remove("REDIS_URL").kill_on_drop(true);
            for key in PUSH_ENV {
                cmd.env_remove(key);
            }
            let out = tokio::time::timeout(WAIT, cmd.envs(env).output()).await;
            (changes, names, out.map(|out| out.expect("runs")))
        }
    });
    for (changes, names, out) in futures::future::join_all(runs).await {
        let out = out.unwrap_or_else(|_| panic!("{changes:?}: accepted, the binary still runs after {WAIT:?}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{changes:?}: {stderr}");
        assert!(names.split('|').any(|name| stderr.contains(name)), "{changes:?}: the message names {names}: {stderr}");
        assert!(!stdout.contains("listening"), "{changes:?}: it served");
        for line in material.iter().chain(&rsa_material) {
            assert!(
                !stderr.contains(line.as_str()) && !stdout.contains(line.as_str()),
                "{changes:?}: a key printed: {stderr}"
            );
        }
    }

    // Rightly configured: the binary starts; boundaries of the limits are accepted.
    let account_without_project = account_with("project_id", None);
    let starts = [
        env_with(&[("PUSH_MAX_DEVICES", some("100")), ("PUSH_MAX_ATTEMPTS", some("20"))]),
        env_with(&[
            ("PUSH_MAX_DEVICES", some("1")),
            ("PUSH_MAX_ATTEMPTS", some("1")),
            ("FCM_SERVICE_ACCOUNT_FILE", some(&account_without_project)),
            ("FCM_PROJECT_ID", some("another-project")),
            ("VAPID_SUBJECT", some("https://example.com/contact")),
            ("APNS_TOPIC", some("com.example.calls,com.example.beta")),
        ]),
    ];
    for (n, env) in starts.iter().enumerate() {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (mut child, api) = spawn_binary(&env).await;
        let (status, config) = api.get("/push/config").await;
        assert_eq!(status, StatusCode::OK, "{config}");
        let app_ids: &[&str] = if n == 0 { &TOPICS[..1] } else { &TOPICS };
        assert_config(&config, &["apns-voip", "apns", "fcm", "webpush"], Some(VAPID_PUBLIC), app_ids);
        child.start_kill().expect("kills");
        let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("exits").expect("output");
        let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for line in material.iter().chain(&rsa_material) {
            assert!(!logs.contains(line.as_str()), "a key in the logs: {logs}");
        }
    }
}

/// Tokens, endpoints and keys stay out of the logs (at debug level, as JSON) and out of
/// `/metrics`, whatever happens to the registration: registered, refused, registered
/// again, moved, deleted. Breaks it: a request body or a device document logged, a token
/// in an error message, a span field or a metric label.
#[tokio::test]
async fn device_secrets_stay_out_of_logs_and_metrics() {
    let mut env = env_with(&[("WEBPUSH_ALLOWED_HOSTS", Some("push.example.com".to_owned()))]);
    env.extend([("RUST_LOG", "debug".to_owned()), ("LOG_FORMAT", "json".to_owned())]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut replica, api) = spawn_binary(&env).await;
    let (ana, ben) = (api.user("Ana").await, api.user("Ben").await);
    let bodies = [
        apns("apns-voip", &apns_token()),
        apns("apns", &apns_token().to_uppercase()),
        fcm(&fcm_token()),
        webpush(&endpoint()),
    ];
    let refused = [
        apns("apns-voip", &format!("{}0", apns_token())),
        fcm(&format!("{} {}", fcm_token(), fcm_token())),
        json!({ "platform": "webpush", "subscription": { "endpoint": endpoint(), "keys": { "p256dh": P256DH, "auth": "too-short" } } }),
        json!({ "platform": "webpush", "subscription": subscription(&endpoint().replace("push.example.com", "evil.example")) }),
    ];
    let mut hidden: Vec<String> = bodies.iter().chain(&refused).flat_map(secrets).collect();
    hidden.push(P256DH.to_owned());
    let mut devices = Vec::new();
    for body in &bodies {
        let (status, device, raw) = register(&api, &ana, body).await;
        assert_eq!(status, StatusCode::CREATED, "{raw}");
        devices.push(device);
    }
    for body in &refused {
        assert_eq!(register(&api, &ana, body).await.0, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(register(&api, &ana, &bodies[2]).await.0, StatusCode::OK, "registered again");
    assert_eq!(register(&api, &ben, &bodies[0]).await.0, StatusCode::CREATED, "moved");
    assert_eq!(delete(&api, &ana, id(&devices[3])).await.0, StatusCode::NO_CONTENT);
    let metrics = api.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    let pid = replica.id().expect("running").to_string();
    let _ = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await;
    let _ = tokio::time::timeout(WAIT, replica.wait()).await.expect("exits");
    let mut logs = String::new();
    use tokio::io::AsyncReadExt;
    replica.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
    replica.stderr.take().expect("stderr").read_to_string(&mut logs).await.expect("logs");
    assert!(logs.contains("/devices"), "the device requests were logged:\n{logs}");
    for (what, text) in [("logs", &logs), ("metrics", &metrics)] {
        for secret in &hidden {
            assert!(!text.contains(secret.as_str()), "{secret} in the {what}");
        }
    }
}

on_both_stores!(&[];
    each_platform_is_registered_listed_and_deleted,
    registering_again_refreshes_and_another_user_takes_it_over,
    a_raced_registration_has_one_owner,
    beyond_the_limit_the_device_updated_longest_ago_leaves,
    invalid_fields_are_named_and_change_nothing,
    push_config_describes_what_is_enabled,
    erasing_a_user_deletes_their_devices,
);

mod limited {
    on_both_stores!(&["--push-max-devices", "3"];
        beyond_the_limit_the_device_updated_longest_ago_leaves,
    );
    use super::*;
}

mod token {
    on_both_stores!(&crate::support::TOKEN_MODE;
        each_platform_is_registered_listed_and_deleted,
        registering_again_refreshes_and_another_user_takes_it_over,
        push_config_describes_what_is_enabled,
        erasing_a_user_deletes_their_devices,
        devices_need_a_token_and_belong_to_their_user,
    );
    use super::*;
}
