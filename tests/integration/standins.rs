//! Self-tests of the push stand-ins (support/standins): a hand-made client sends each stand-in
//! a correct request and one of each wrong kind, and the test checks the stand-in's answer and
//! what it recorded. No switchboard runs here.

use crate::support::WAIT;
use crate::support::standins::apns::{ApnsConfig, Reply as ApnsReply};
use crate::support::standins::fcm::{FcmConfig, GRANT_TYPE, Reply as FcmReply, SCOPE};
use crate::support::standins::webpush::{Reply as PushReply, Subscription, vapid_public_key};
use crate::support::standins::{Apns, Fcm, WebPush, keys, unix_now};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use reqwest::{StatusCode, Version};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY_ID: &str = "KEY1234567";
const TEAM_ID: &str = "TEAM123456";
const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// The service account of `tests/fixtures/push/fcm-service-account.json`.
const CLIENT_EMAIL: &str = "switchboard@test-project.iam.gserviceaccount.com";
const PROJECT: &str = "test-project";

/// HTTP/2 with prior knowledge (h2c), as switchboard speaks to an `http://` APNs URL.
fn h2c() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().expect("client")
}

fn http1() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().expect("client")
}

/// A fresh P-256 key as a PKCS#8 PEM (a `.p8`).
fn fresh_p8() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    p256::SecretKey::random(&mut OsRng).to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string()
}

fn es256(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    switchboard::auth::install_jwt_crypto();
    let header = Header { kid: kid.map(str::to_owned), ..Header::new(Algorithm::ES256) };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key")).expect("signs")
}

/// `request` with header `name` set to `value` (replacing any), or removed.
fn with(mut request: reqwest::Request, name: &'static str, value: Option<&str>) -> reqwest::Request {
    match value {
        Some(value) => {
            request.headers_mut().insert(name, value.parse().expect("a header value"));
        }
        None => {
            request.headers_mut().remove(name);
        }
    }
    request
}

/// `request` with this body.
fn with_body(mut request: reqwest::Request, body: impl Into<reqwest::Body>) -> reqwest::Request {
    *request.body_mut() = Some(body.into());
    request
}

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

// ---------------------------------------------------------------------------------------------
// APNs

fn provider_token(iat: u64) -> String {
    es256(keys::APNS_P8, Some(KEY_ID), &json!({ "iss": TEAM_ID, "iat": iat }))
}

async fn apns() -> Apns {
    Apns::start(ApnsConfig::new(keys::APNS_P8, KEY_ID, TEAM_ID)).await
}

/// A VoIP push as contract 10.3 describes it, with `authorization` (when given).
fn voip_push(client: &reqwest::Client, apns: &Apns, token: &str, auth: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = client
        .post(format!("{}/3/device/{token}", apns.url()))
        .header("apns-push-type", "voip")
        .header("apns-topic", "com.example.calls.voip")
        .header("apns-priority", "10")
        .header("apns-expiration", "1767225600")
        .header("apns-collapse-id", "0b3c9e0e-1d3f-4a7e-9d41-52a9f8c3b0aa")
        .json(&json!({ "event": "call.ring", "data": { "callId": "0b3c9e0e-1d3f-4a7e-9d41-52a9f8c3b0aa" } }));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request
}

async fn reason(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["reason"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn apns_accepts_a_valid_push_and_records_it() {
    let apns = apns().await;
    let jwt = provider_token(unix_now());
    let apns_id = uuid::Uuid::new_v4().to_string();
    let sent = Instant::now();
    let response = voip_push(&h2c(), &apns, DEVICE, Some(&format!("bearer {jwt}")))
        .header("apns-id", &apns_id)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["apns-id"], apns_id.as_str());
    assert_eq!(response.bytes().await.expect("body").len(), 0);

    let requests = apns.wait_for(1, WAIT).await;
    let r = &requests[0];
    assert!(r.at >= sent && r.at <= Instant::now());
    assert_eq!((r.version, r.method.as_str(), r.device_token.as_str()), (Version::HTTP_2, "POST", DEVICE));
    assert_eq!(r.push_type.as_deref(), Some("voip"));
    assert_eq!(r.topic.as_deref(), Some("com.example.calls.voip"));
    assert_eq!(r.priority.as_deref(), Some("10"));
    assert_eq!(r.expiration.as_deref(), Some("1767225600"));
    assert_eq!(r.collapse_id.as_deref(), Some("0b3c9e0e-1d3f-4a7e-9d41-52a9f8c3b0aa"));
    assert_eq!(r.apns_id.as_deref(), Some(apns_id.as_str()));
    assert_eq!(r.provider_token.as_deref(), Some(jwt.as_str()));
    assert_eq!((r.kid.as_deref(), r.iss.as_deref()), (Some(KEY_ID), Some(TEAM_ID)));
    assert!(r.iat.is_some_and(|iat| iat.abs_diff(unix_now()) <= 1));
    assert_eq!(r.payload.as_ref().expect("JSON")["event"], "call.ring");
    assert_eq!((r.status, r.refused.as_deref()), (Some(200), None));

    // Without an apns-id, APNs makes one up and answers it.
    let response = voip_push(&h2c(), &apns, DEVICE, Some(&format!("bearer {jwt}"))).send().await.expect("answered");
    let made_up = response.headers()["apns-id"].to_str().expect("text").to_owned();
    assert!(uuid::Uuid::parse_str(&made_up).is_ok(), "{made_up}");
    assert_eq!(apns.provider_tokens(), vec![jwt]);
}

#[tokio::test]
async fn apns_refuses_bad_provider_tokens_before_its_script() {
    let apns = apns().await;
    apns.respond(DEVICE, vec![ApnsReply::internal_server_error()]);
    let now = unix_now();
    let hs256 = jsonwebtoken::encode(
        &Header { kid: Some(KEY_ID.to_owned()), ..Header::new(Algorithm::HS256) },
        &json!({ "iss": TEAM_ID, "iat": now }),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("signs");
    let cases = [
        (None, "MissingProviderToken"),
        (Some("bearer not-a-jwt".to_owned()), "InvalidProviderToken"),
        (
            Some(format!("bearer {}", es256(&fresh_p8(), Some(KEY_ID), &json!({"iss": TEAM_ID, "iat": now})))),
            "InvalidProviderToken",
        ),
        (
            Some(format!("bearer {}", es256(keys::APNS_P8, Some("OTHERKEY12"), &json!({"iss": TEAM_ID, "iat": now})))),
            "InvalidProviderToken",
        ),
        (
            Some(format!("bearer {}", es256(keys::APNS_P8, None, &json!({"iss": TEAM_ID, "iat": now})))),
            "InvalidProviderToken",
        ),
        (
            Some(format!("bearer {}", es256(keys::APNS_P8, Some(KEY_ID), &json!({"iss": "OTHERTEAM1", "iat": now})))),
            "InvalidProviderToken",
        ),
        (
            Some(format!("bearer {}", es256(keys::APNS_P8, Some(KEY_ID), &json!({"iss": TEAM_ID})))),
            "InvalidProviderToken",
        ),
        (Some(format!("bearer {}", provider_token(now + 600))), "InvalidProviderToken"),
        (Some(format!("bearer {}", provider_token(now - 3700))), "ExpiredProviderToken"),
        (Some(format!("bearer {hs256}")), "InvalidProviderToken"),
    ];
    let client = h2c();
    for (auth, expected) in &cases {
        let response = voip_push(&client, &apns, DEVICE, auth.as_deref()).send().await.expect("answered");
        assert!(response.headers().contains_key("apns-id"));
        assert_eq!(reason(response).await, (403, (*expected).to_owned()), "{auth:?}");
    }
    let requests = apns.wait_for(cases.len(), WAIT).await;
    assert!(requests.iter().all(|r| r.status == Some(403) && r.refused.is_some()), "{requests:#?}");
    assert_eq!(requests[3].kid.as_deref(), Some("OTHERKEY12"));
    assert_eq!(requests[5].iss.as_deref(), Some("OTHERTEAM1"));
    assert_eq!(apns.pending(DEVICE), 1, "a refused request consumes no scripted reply");

    // An hour old minus a minute is still good; the script answers it.
    let response =
        voip_push(&client, &apns, DEVICE, Some(&format!("bearer {}", provider_token(now - 3540)))).send().await;
    assert_eq!(reason(response.expect("answered")).await, (500, "InternalServerError".to_owned()));
}

#[tokio::test]
async fn apns_answers_from_the_script_in_order_then_the_default() {
    let apns = apns().await;
    let auth = format!("bearer {}", provider_token(unix_now()));
    apns.respond(
        DEVICE,
        vec![
            ApnsReply::status(429).reason("TooManyRequests").retry_after(1),
            ApnsReply::unregistered(1_700_000_000_123),
            ApnsReply::bad_device_token(),
            ApnsReply::status(500),
            ApnsReply::service_unavailable(),
            ApnsReply::expired_provider_token(),
            ApnsReply::status(410),
        ],
    );
    let client = h2c();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let response = voip_push(&client, &apns, DEVICE, Some(&auth)).send().await.expect("answered");
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("text").to_owned());
        let status = response.status().as_u16();
        let body: Value = if status == 200 { Value::Null } else { response.json().await.expect("JSON") };
        answers.push((status, body, retry_after));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [429, 410, 400, 500, 503, 403, 410, 200]);
    assert_eq!(answers[0].1, json!({ "reason": "TooManyRequests" }));
    assert_eq!(answers[0].2.as_deref(), Some("1"));
    assert_eq!(answers[1].1, json!({ "reason": "Unregistered", "timestamp": 1_700_000_000_123u64 }));
    assert_eq!(answers[2].1["reason"], "BadDeviceToken");
    assert_eq!(answers[3].1["reason"], "InternalServerError");
    assert_eq!(answers[4].1["reason"], "ServiceUnavailable");
    assert_eq!(answers[5].1["reason"], "ExpiredProviderToken");
    let timestamp = answers[6].1["timestamp"].as_u64().expect("a timestamp, now");
    assert!(timestamp.abs_diff(crate::support::standins::unix_now_ms()) < 5_000);
    assert_eq!(apns.pending(DEVICE), 0);

    // Another token has no script; a new default applies to every token without one.
    let other = "00ff00ff00ff00ff";
    assert_eq!(voip_push(&client, &apns, other, Some(&auth)).send().await.expect("answered").status(), 200);
    apns.set_default(ApnsReply::service_unavailable());
    assert_eq!(voip_push(&client, &apns, other, Some(&auth)).send().await.expect("answered").status(), 503);
    let requests = apns.wait_for(10, WAIT).await;
    let recorded: Vec<Option<u16>> = requests.iter().map(|r| r.status).collect();
    assert_eq!(recorded[..7], [Some(429), Some(410), Some(400), Some(500), Some(503), Some(403), Some(410)]);
    assert_eq!(requests[2].reason.as_deref(), Some("BadDeviceToken"));
}

#[tokio::test]
async fn apns_checks_the_request_as_apns_does() {
    let apns = Apns::start(ApnsConfig::new(keys::APNS_P8, KEY_ID, TEAM_ID).topics(&["com.example.calls"])).await;
    let auth = format!("bearer {}", provider_token(unix_now()));
    let client = h2c();
    let push = || voip_push(&client, &apns, DEVICE, Some(&auth)).build().expect("request");
    let big = |n: usize| json!({ "event": "x".repeat(n - 12) }).to_string();
    assert_eq!(big(5121).len(), 5121);
    let mut get = push();
    *get.method_mut() = reqwest::Method::GET;
    let mut bad_path = push();
    bad_path.url_mut().set_path("/2/device/x");
    let alert = |n: usize| {
        let request = with(push(), "apns-push-type", Some("alert"));
        with_body(with(request, "apns-topic", Some("com.example.calls")), big(n))
    };
    let long_id = "c".repeat(65);
    let cases: Vec<(reqwest::Request, u16, &str)> = vec![
        (with(push(), "apns-priority", Some("7")), 400, "BadPriority"),
        (with(push(), "apns-push-type", Some("ring")), 400, "InvalidPushType"),
        (with(push(), "apns-expiration", Some("soon")), 400, "BadExpirationDate"),
        (with(push(), "apns-collapse-id", Some(&long_id)), 400, "BadCollapseId"),
        (with(push(), "apns-id", Some("not-a-uuid")), 400, "BadMessageId"),
        (with(push(), "apns-topic", Some("com.other.app.voip")), 400, "TopicDisallowed"),
        (with(push(), "apns-topic", None), 400, "MissingTopic"),
        (voip_push(&client, &apns, "not-hex!", Some(&auth)).build().expect("request"), 400, "BadDeviceToken"),
        (with_body(push(), big(5121)), 413, "PayloadTooLarge"),
        (alert(4097), 413, "PayloadTooLarge"),
        (with_body(push(), ""), 400, "PayloadEmpty"),
        (with_body(push(), "[1]"), 400, "BadRequest"),
        (get, 405, "MethodNotAllowed"),
        (bad_path, 404, "BadPath"),
    ];
    for (request, status, expected) in cases {
        let what = format!("{} {} {:?}", request.method(), request.url(), request.headers());
        let response = client.execute(request).await.expect("answered");
        assert_eq!(reason(response).await, (status, expected.to_owned()), "{what}");
    }
    // Alert pushes may carry 4096 bytes, VoIP pushes 5120.
    assert_eq!(client.execute(alert(4096)).await.expect("answered").status(), 200);
    assert_eq!(client.execute(with_body(push(), big(5120))).await.expect("answered").status(), 200);
    assert!(apns.requests().iter().all(|r| r.status.is_some()));

    // HTTP/2 only: an HTTP/1.1 client gets no answer.
    assert!(voip_push(&http1(), &apns, DEVICE, Some(&auth)).send().await.is_err());
}

#[tokio::test]
async fn apns_hangs_disconnects_and_sends_goaway_when_told() {
    let apns = apns().await;
    let auth = format!("bearer {}", provider_token(unix_now()));
    apns.respond(
        DEVICE,
        vec![
            ApnsReply::hang(),
            ApnsReply::disconnect(),
            ApnsReply::goaway(),
            ApnsReply::ok().after(Duration::from_millis(200)),
        ],
    );
    let client = h2c();
    let started = Instant::now();
    let hung = voip_push(&client, &apns, DEVICE, Some(&auth)).timeout(Duration::from_millis(300)).send().await;
    assert!(hung.expect_err("no answer").is_timeout());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let dropped = voip_push(&client, &apns, DEVICE, Some(&auth)).timeout(WAIT).send().await;
    assert!(!dropped.expect_err("connection closed").is_timeout());
    let goaway = voip_push(&client, &apns, DEVICE, Some(&auth)).timeout(WAIT).send().await;
    assert!(!goaway.expect_err("GOAWAY, no answer").is_timeout());
    let started = Instant::now();
    let late = voip_push(&client, &apns, DEVICE, Some(&auth)).send().await.expect("answered");
    assert_eq!(late.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let requests = apns.wait_for(4, WAIT).await;
    assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), [None, None, None, Some(200)]);
    // A new connection after each one the stand-in closed.
    assert_eq!(requests[0].conn, requests[1].conn);
    assert!(requests[2].conn > requests[1].conn && requests[3].conn > requests[2].conn, "{requests:#?}");
}

#[tokio::test]
async fn apns_waits_are_bounded_and_see_concurrent_pushes() {
    let apns = apns().await;
    let auth = format!("bearer {}", provider_token(unix_now()));
    let client = h2c();
    let started = Instant::now();
    let tokens = ["0a0a0a0a0a0a0a0a", "0b0b0b0b0b0b0b0b", "0c0c0c0c0c0c0c0c"];
    for (i, token) in tokens.iter().enumerate() {
        let request = voip_push(&client, &apns, token, Some(&auth));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50 * i as u64)).await;
            let _ = request.send().await;
        });
    }
    let requests = apns.wait_for(3, WAIT).await;
    assert!(requests.iter().all(|r| r.at >= started));
    let mut seen: Vec<&str> = requests.iter().map(|r| r.device_token.as_str()).collect();
    seen.sort_unstable();
    assert_eq!(seen, tokens);
    assert!(requests[2].at.duration_since(requests[0].at) >= Duration::from_millis(90));
    let all = apns.log().wait_until(WAIT, "the b token", |r| r.iter().any(|r| r.device_token == tokens[1])).await;
    assert_eq!(all.len(), 3);
    apns.log().expect_no_more(3, Duration::from_millis(100)).await;
    // One connection: reqwest multiplexes the streams.
    assert!(requests.iter().all(|r| r.conn == requests[0].conn));
    apns.log().clear();
    assert!(apns.log().is_empty());
}

#[tokio::test]
async fn apns_over_tls_offers_h2_with_its_own_ca() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    let apns = Apns::start_tls(ApnsConfig::from_key_file(keys::fixture("apns.p8"), KEY_ID, TEAM_ID)).await;
    assert!(apns.url().starts_with("https://127.0.0.1:"));
    let ca_file = apns.ca_file().expect("a CA file");
    assert_eq!(std::fs::read_to_string(ca_file).expect("readable"), apns.ca_pem().expect("PEM"));
    let tls = |roots: rustls::RootCertStore| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", apns.port()));
    let name = ServerName::try_from("127.0.0.1").expect("an IP name");

    // Without the CA the handshake fails.
    let untrusted = tls(rustls::RootCertStore::empty()).connect(name.clone(), connect().await.expect("TCP")).await;
    assert!(untrusted.is_err());

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("PEM") {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let stream = tls(roots).connect(name, connect().await.expect("TCP")).await.expect("handshake with the CA");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("HTTP/2");
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("{}/3/device/{DEVICE}", apns.url()))
        .header("authorization", format!("bearer {}", provider_token(unix_now())))
        .header("apns-push-type", "voip")
        .header("apns-topic", "com.example.calls.voip")
        .body(Full::new(bytes::Bytes::from_static(br#"{"event":"call.ring","data":{}}"#)))
        .expect("request");
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    assert!(response.into_body().collect().await.expect("body").to_bytes().is_empty());
    let requests = apns.wait_for(1, WAIT).await;
    assert_eq!((requests[0].alpn.as_deref(), requests[0].version), (Some("h2"), Version::HTTP_2));
    assert_eq!(requests[0].status, Some(200));
}

// ---------------------------------------------------------------------------------------------
// FCM

async fn fcm() -> Fcm {
    Fcm::start(FcmConfig::from_service_account_file(keys::fixture("fcm-service-account.json"))).await
}

fn rs256(pem: &str, claims: &Value) -> String {
    switchboard::auth::install_jwt_crypto();
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("signs")
}

fn assertion_claims(fcm: &Fcm, iat: u64) -> Value {
    json!({ "iss": CLIENT_EMAIL, "scope": SCOPE, "aud": fcm.token_url(), "iat": iat, "exp": iat + 3600 })
}

async fn post_token(fcm: &Fcm, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http1()
        .post(fcm.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("answered");
    (response.status().as_u16(), response.json().await.expect("JSON"))
}

async fn access_token(fcm: &Fcm) -> String {
    let assertion = rs256(&keys::fcm_private_key(), &assertion_claims(fcm, unix_now()));
    let (status, body) = post_token(fcm, &[("grant_type", GRANT_TYPE), ("assertion", &assertion)]).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("a token").to_owned()
}

fn ring_message(token: &str) -> Value {
    json!({ "message": {
        "token": token,
        "data": { "event": "call.ring", "callId": "c-1", "fromName": "Ana" },
        "android": { "priority": "HIGH", "ttl": "42s", "collapse_key": "c-1" },
    } })
}

async fn send(client: &reqwest::Client, fcm: &Fcm, bearer: Option<&str>, body: &Value) -> (u16, Value, Option<String>) {
    let mut request = client.post(format!("{}/v1/projects/{PROJECT}/messages:send", fcm.url())).json(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("answered");
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("text").to_owned());
    (response.status().as_u16(), response.json().await.expect("JSON"), retry_after)
}

#[tokio::test]
async fn fcm_issues_access_tokens_and_accepts_a_valid_message() {
    let fcm = fcm().await;
    let iat = unix_now();
    let assertion = rs256(&keys::fcm_private_key(), &assertion_claims(&fcm, iat));
    let (status, body) = post_token(&fcm, &[("grant_type", GRANT_TYPE), ("assertion", &assertion)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["expires_in"].as_u64(), body["token_type"].as_str()), (Some(3599), Some("Bearer")));
    let token = body["access_token"].as_str().expect("a token").to_owned();
    assert_eq!(fcm.token_fetches(), 1);
    let fetches = fcm.token_log().wait_for(1, WAIT).await;
    let claims = fetches[0].claims.as_ref().expect("verified claims");
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some(CLIENT_EMAIL), Some(fcm.token_url())));
    assert_eq!(fetches[0].form["grant_type"], GRANT_TYPE);
    assert_eq!(fetches[0].access_token.as_deref(), Some(token.as_str()));

    let (status, body, _) = send(&http1(), &fcm, Some(&token), &ring_message("reg-token-1")).await;
    assert_eq!(status, 200, "{body}");
    let name = body["name"].as_str().expect("a name");
    assert!(name.starts_with(&format!("projects/{PROJECT}/messages/")), "{name}");
    // h2c works too.
    let (status, _, _) = send(&h2c(), &fcm, Some(&token), &ring_message("reg-token-1")).await;
    assert_eq!(status, 200);

    let requests = fcm.wait_for(2, WAIT).await;
    let r = &requests[0];
    assert_eq!((r.project.as_str(), r.token.as_deref()), (PROJECT, Some("reg-token-1")));
    assert_eq!(r.access_token.as_deref(), Some(token.as_str()));
    assert_eq!(r.data["event"], "call.ring");
    assert_eq!(r.data["fromName"], "Ana");
    assert_eq!(
        (r.priority.as_deref(), r.ttl.as_deref(), r.collapse_key.as_deref()),
        (Some("HIGH"), Some("42s"), Some("c-1"))
    );
    assert!(!r.has_notification);
    assert_eq!((r.version, requests[1].version), (Version::HTTP_11, Version::HTTP_2));
    assert_eq!(r.status, Some(200));
    assert_eq!(fcm.token_fetches(), 1);

    // The service-account file names this stand-in as its token endpoint.
    let account: Value =
        serde_json::from_str(&std::fs::read_to_string(fcm.service_account_file()).expect("file")).expect("JSON");
    assert_eq!(account["token_uri"], fcm.token_url());
    assert_eq!((account["client_email"].as_str(), account["project_id"].as_str()), (Some(CLIENT_EMAIL), Some(PROJECT)));
    let _ = FcmConfig::from_service_account_file(fcm.service_account_file());
}

#[tokio::test]
async fn fcm_token_endpoint_refuses_bad_assertions() {
    let fcm = fcm().await;
    let now = unix_now();
    let good = assertion_claims(&fcm, now);
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        rs256(&keys::fcm_private_key(), &claims)
    };
    let cases: Vec<(String, String, &str)> = vec![
        (GRANT_TYPE.to_owned(), rs256(keys::RSA_OTHER, &good), "invalid_grant"),
        (GRANT_TYPE.to_owned(), es256(&fresh_p8(), None, &good), "invalid_grant"),
        (GRANT_TYPE.to_owned(), with("iss", json!("someone@else.iam.gserviceaccount.com")), "invalid_grant"),
        (
            GRANT_TYPE.to_owned(),
            with("scope", json!("https://www.googleapis.com/auth/cloud-platform")),
            "invalid_scope",
        ),
        (GRANT_TYPE.to_owned(), with("aud", json!("https://oauth2.googleapis.com/token")), "invalid_grant"),
        (GRANT_TYPE.to_owned(), with("exp", json!(now + 7200)), "invalid_grant"),
        (GRANT_TYPE.to_owned(), with("iat", json!(now - 7200)), "invalid_grant"),
        ("client_credentials".to_owned(), rs256(&keys::fcm_private_key(), &good), "unsupported_grant_type"),
    ];
    for (grant_type, assertion, expected) in &cases {
        let (status, body) = post_token(&fcm, &[("grant_type", grant_type), ("assertion", assertion)]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(*expected)), "{body}");
        assert!(body["error_description"].is_string());
    }
    let (status, body) = post_token(&fcm, &[("grant_type", GRANT_TYPE)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    // Not a form.
    let response = http1().post(fcm.token_url()).json(&json!({ "grant_type": GRANT_TYPE })).send().await;
    assert_eq!(response.expect("answered").status(), 400);

    let fetches = fcm.token_log().wait_for(cases.len() + 2, WAIT).await;
    assert!(fetches.iter().all(|r| r.status == Some(400) && r.refused.is_some() && r.access_token.is_none()));
    assert_eq!(fcm.token_fetches(), 0);
}

#[tokio::test]
async fn fcm_send_requires_a_live_access_token_of_the_project() {
    let fcm = fcm().await;
    let client = http1();
    let message = ring_message("reg-token-1");
    for bearer in [None, Some("ya29.made-up")] {
        let (status, body, _) = send(&client, &fcm, bearer, &message).await;
        assert_eq!((status, body["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")), "{body}");
    }
    fcm.set_expires_in(0);
    let expired = access_token(&fcm).await;
    assert_eq!(send(&client, &fcm, Some(&expired), &message).await.0, 401);
    fcm.set_expires_in(3599);
    let token = access_token(&fcm).await;
    assert_eq!(send(&client, &fcm, Some(&token), &message).await.0, 200);
    fcm.revoke_access_tokens();
    assert_eq!(send(&client, &fcm, Some(&token), &message).await.0, 401);
    let fresh = access_token(&fcm).await;
    assert_ne!(fresh, token);
    assert_eq!(send(&client, &fcm, Some(&fresh), &message).await.0, 200);
    assert_eq!(fcm.token_fetches(), 3);

    let other_project = client
        .post(format!("{}/v1/projects/another-project/messages:send", fcm.url()))
        .bearer_auth(&fresh)
        .json(&message)
        .send()
        .await
        .expect("answered");
    assert_eq!(other_project.status(), 403);
    let body: Value = other_project.json().await.expect("JSON");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    let requests = fcm.wait_for(7, WAIT).await;
    let statuses: Vec<Option<u16>> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(401), Some(401), Some(401), Some(200), Some(401), Some(200), Some(403)]);
    assert_eq!(requests[6].project, "another-project");
    assert!(requests[4].refused.as_deref().is_some_and(|why| why.contains("revoked")));
}

#[tokio::test]
async fn fcm_refuses_malformed_messages_with_bad_request() {
    let fcm = fcm().await;
    let token = access_token(&fcm).await;
    let client = http1();
    let edit = |change: &dyn Fn(&mut Value)| {
        let mut message = ring_message("reg-token-1");
        change(&mut message);
        message
    };
    let cases = [
        (edit(&|m| m["message"]["data"]["attempt"] = json!(12)), "message.data[0].value"),
        (edit(&|m| m["message"]["data"]["from"] = json!("me")), "message.data[2].key"),
        (edit(&|m| m["message"]["android"]["priority"] = json!("URGENT")), "message.android.priority"),
        (edit(&|m| m["message"]["android"]["ttl"] = json!("60")), "message.android.ttl"),
        (edit(&|m| m["message"]["android"]["ttl"] = json!("2419201s")), "message.android.ttl"),
        (edit(&|m| m["message"]["android"]["collapse"] = json!("c-1")), "message.android.collapse"),
        (edit(&|m| m["message"]["tokens"] = json!(["a"])), "message.tokens"),
        (edit(&|m| m["message"].as_object_mut().expect("object").retain(|k, _| k != "token")), "message"),
        (edit(&|m| m["validate"] = json!(true)), "validate"),
        (json!([]), ""),
    ];
    for (message, field) in &cases {
        let (status, body, _) = send(&client, &fcm, Some(&token), message).await;
        assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")), "{body}");
        let details = &body["error"]["details"];
        assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.BadRequest", "{body}");
        assert_eq!(details[0]["fieldViolations"][0]["field"], *field, "{body}");
        assert_eq!(details.as_array().map(Vec::len), Some(1), "no FcmError: {body}");
    }
    // A notification block is allowed (the stand-in records it).
    let with_notification = edit(&|m| m["message"]["notification"] = json!({ "title": "Call" }));
    assert_eq!(send(&client, &fcm, Some(&token), &with_notification).await.0, 200);
    let requests = fcm.wait_for(cases.len() + 1, WAIT).await;
    assert!(requests[..cases.len()].iter().all(|r| r.status == Some(400) && r.refused.is_some()));
    assert!(requests[cases.len()].has_notification);
    assert_eq!(requests[0].data.get("attempt"), None, "only string values are kept");
}

#[tokio::test]
async fn fcm_answers_from_the_script_with_fcm_v1_error_bodies() {
    let fcm = fcm().await;
    let token = access_token(&fcm).await;
    fcm.respond(
        "reg-token-1",
        vec![
            FcmReply::unregistered(),
            FcmReply::invalid_token(),
            FcmReply::bad_request("message.data[0].value"),
            FcmReply::sender_id_mismatch(),
            FcmReply::quota_exceeded(30),
            FcmReply::internal(),
            FcmReply::unavailable().retry_after(5),
            FcmReply::unauthenticated(),
            FcmReply::third_party_auth_error(),
            FcmReply::status(502),
        ],
    );
    let client = http1();
    let mut answers = Vec::new();
    for _ in 0..11 {
        answers.push(send(&client, &fcm, Some(&token), &ring_message("reg-token-1")).await);
    }
    let fcm_error = |answer: &(u16, Value, Option<String>)| {
        let details = answer.1["error"]["details"].as_array().cloned().unwrap_or_default();
        details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")
            .map(|d| d["errorCode"].as_str().unwrap_or_default().to_owned())
    };
    let expected = [
        (404, "NOT_FOUND", Some("UNREGISTERED")),
        (400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT")),
        (400, "INVALID_ARGUMENT", None),
        (403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")),
        (429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")),
        (500, "INTERNAL", Some("INTERNAL")),
        (503, "UNAVAILABLE", Some("UNAVAILABLE")),
        (401, "UNAUTHENTICATED", None),
        (401, "UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR")),
        (502, "INTERNAL", None),
    ];
    for (answer, (status, text, code)) in answers.iter().zip(expected) {
        assert_eq!(answer.0, status, "{}", answer.1);
        assert_eq!(answer.1["error"]["code"], status);
        assert_eq!(answer.1["error"]["status"], text);
        assert!(answer.1["error"]["message"].is_string());
        assert_eq!(fcm_error(answer).as_deref(), code, "{}", answer.1);
    }
    assert_eq!(answers[2].1["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(answers[4].2.as_deref(), Some("30"));
    assert_eq!(answers[6].2.as_deref(), Some("5"));
    assert_eq!(answers[10].0, 200);
    let requests = fcm.wait_for(11, WAIT).await;
    assert!(requests.iter().all(|r| r.refused.is_none()));
}

#[tokio::test]
async fn fcm_token_script_and_hangs() {
    let fcm = fcm().await;
    fcm.respond_token(vec![FcmReply::status(503), FcmReply::hang()]);
    let assertion = rs256(&keys::fcm_private_key(), &assertion_claims(&fcm, unix_now()));
    let form = [("grant_type", GRANT_TYPE), ("assertion", assertion.as_str())];
    let (status, body) = post_token(&fcm, &form).await;
    assert_eq!((status, body["error"].is_string()), (503, true), "{body}");
    let hung = http1()
        .post(fcm.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(hung.expect_err("no answer").is_timeout());
    let (status, body) = post_token(&fcm, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fcm.token_fetches(), 1);
    let token = body["access_token"].as_str().expect("a token");

    fcm.respond("reg-token-1", vec![FcmReply::hang()]);
    let hung = http1()
        .post(format!("{}/v1/projects/{PROJECT}/messages:send", fcm.url()))
        .bearer_auth(token)
        .json(&ring_message("reg-token-1"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(hung.expect_err("no answer").is_timeout());
    let requests = fcm.wait_for(1, WAIT).await;
    assert_eq!(requests[0].status, None);
}

// ---------------------------------------------------------------------------------------------
// Web Push

/// RFC 8291 (with RFC 8188): the message encrypted for `subscription` in records of
/// `record_size`, one per chunk of `plaintext`.
fn encrypt(subscription: &Subscription, auth: &[u8], chunks: &[&[u8]], record_size: u32) -> Vec<u8> {
    let ua_public = p256::PublicKey::from_sec1_bytes(&b64(&subscription.p256dh)).expect("p256dh");
    let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let as_public = ephemeral.public_key().to_encoded_point(false);
    let shared = ephemeral.diffie_hellman(&ua_public);
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public.to_encoded_point(false).as_bytes());
    info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(auth), shared.raw_secret_bytes().as_slice())
        .expand(&info, &mut ikm)
        .expect("32 bytes");
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let records = chunks.iter().map(|c| c.to_vec());
    ece_native::encrypt(ikm, salt, as_public.as_bytes(), records, record_size).expect("encrypts")
}

struct Vapid {
    pem: String,
    public: String,
}

fn vapid() -> Vapid {
    let pem = fresh_p8();
    Vapid { public: vapid_public_key(&pem), pem }
}

fn vapid_header(vapid: &Vapid, claims: &Value) -> String {
    format!("vapid t={}, k={}", es256(&vapid.pem, None, claims), vapid.public)
}

fn vapid_claims(push: &WebPush) -> Value {
    json!({ "aud": push.origin(), "exp": unix_now() + 12 * 3600, "sub": "mailto:ops@example.com" })
}

fn ring_payload() -> Value {
    json!({ "event": "call.ring", "data": { "callId": "0b3c9e0e-1d3f-4a7e-9d41-52a9f8c3b0aa", "fromName": "Ana" } })
}

fn web_push(subscription: &Subscription, authorization: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    http1()
        .post(&subscription.endpoint)
        .header("authorization", authorization)
        .header("content-encoding", "aes128gcm")
        .header("ttl", "30")
        .body(body)
}

#[tokio::test]
async fn webpush_decrypts_a_valid_push_and_records_it() {
    let key = Vapid { pem: keys::VAPID_PEM.to_owned(), public: keys::VAPID_PUBLIC.trim().to_owned() };
    assert_eq!(vapid_public_key(keys::VAPID_PEM), key.public, "the key /push/config serves");
    let push = WebPush::start(&key.public).await;
    let subscription = push.subscribe();
    assert!(subscription.endpoint.starts_with(&format!("{}/push/", push.origin())));
    assert_eq!(b64(&subscription.p256dh).len(), 65);
    assert_eq!(b64(&subscription.auth).len(), 16);
    assert_eq!(subscription.json()["keys"]["auth"], subscription.auth.as_str());
    assert_ne!(push.subscribe().p256dh, subscription.p256dh, "a fresh key pair per subscription");

    let payload = ring_payload().to_string();
    let body = encrypt(&subscription, &b64(&subscription.auth), &[payload.as_bytes()], 4096);
    let authorization = vapid_header(&key, &vapid_claims(&push));
    let response = web_push(&subscription, &authorization, body)
        .header("urgency", "high")
        .header("topic", "0b3c9e0e1d3f4a7e9d4152a9f8c3b0aa")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key("location"));

    let requests = push.wait_for(1, WAIT).await;
    let r = &requests[0];
    assert_eq!((r.subscription.as_str(), r.version), (subscription.id.as_str(), Version::HTTP_11));
    assert_eq!(r.payload.as_ref(), Some(&ring_payload()));
    assert_eq!(r.plaintext.as_deref(), Some(payload.as_bytes()));
    assert_eq!((r.ttl, r.urgency.as_deref()), (Some(30), Some("high")));
    assert_eq!(r.topic.as_deref(), Some("0b3c9e0e1d3f4a7e9d4152a9f8c3b0aa"));
    assert_eq!((r.content_encoding.as_deref(), r.record_size), (Some("aes128gcm"), Some(4096)));
    let vapid = r.vapid.as_ref().expect("VAPID");
    assert_eq!((vapid.aud.as_deref(), vapid.sub.as_deref()), (Some(push.origin()), Some("mailto:ops@example.com")));
    assert_eq!(vapid.k, key.public);
    assert_eq!((r.status, r.refused.as_deref()), (Some(201), None));

    // A record size fitted to the message (as some libraries send) decrypts too, and is recorded.
    let body = encrypt(&subscription, &b64(&subscription.auth), &[payload.as_bytes()], payload.len() as u32 + 17);
    assert_eq!(web_push(&subscription, &authorization, body).send().await.expect("answered").status(), 201);
    let requests = push.wait_for(2, WAIT).await;
    assert_eq!(requests[1].record_size, Some(payload.len() as u32 + 17));
    assert_eq!(requests[1].urgency, None);
}

#[tokio::test]
async fn webpush_decrypts_the_rfc_8291_example() {
    // RFC 8291, Appendix A: the user agent's keys and the message it receives.
    let ua_private = b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94");
    let auth: [u8; 16] = b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().expect("16 bytes");
    let message = b64(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    let key = vapid();
    let push = WebPush::start(&key.public).await;
    let subscription = push.subscribe_with(p256::SecretKey::from_slice(&ua_private).expect("a key"), auth);
    assert_eq!(
        subscription.p256dh,
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    );
    let response = web_push(&subscription, &vapid_header(&key, &vapid_claims(&push)), message).send().await;
    assert_eq!(response.expect("answered").status(), 201);
    let requests = push.wait_for(1, WAIT).await;
    assert_eq!(requests[0].plaintext.as_deref(), Some(&b"When I grow up, I want to be a watermelon"[..]));
    assert_eq!((requests[0].payload.as_ref(), requests[0].record_size), (None, Some(4096)));
}

#[tokio::test]
async fn webpush_refuses_bad_vapid_and_bad_requests() {
    let key = vapid();
    let push = WebPush::start(&key.public).await;
    let subscription = push.subscribe();
    let auth = b64(&subscription.auth);
    let payload = ring_payload().to_string();
    let body = || encrypt(&subscription, &auth, &[payload.as_bytes()], 4096);
    let good = vapid_header(&key, &vapid_claims(&push));
    let claims = |name: &str, value: Value| {
        let mut claims = vapid_claims(&push);
        claims[name] = value;
        vapid_header(&key, &claims)
    };
    let other = vapid();
    let now = unix_now();
    let build = |request: reqwest::RequestBuilder| request.build().expect("request");
    let send = |authorization: &str| build(web_push(&subscription, authorization, body()));
    let with_vapid = |vapid: &Vapid, claims: &Value| send(&vapid_header(vapid, claims));
    let cases: Vec<(reqwest::Request, u16, &str)> = vec![
        (with(send(&good), "authorization", None), 401, "no Authorization"),
        (send(&format!("WebPush {}", es256(&key.pem, None, &vapid_claims(&push)))), 401, "not the vapid scheme"),
        (
            send(&format!("vapid t={}, k={}", es256(&other.pem, None, &vapid_claims(&push)), key.public)),
            401,
            "signed by another key",
        ),
        (with_vapid(&other, &vapid_claims(&push)), 403, "another application server key"),
        (send(&claims("aud", json!(format!("{}/", push.origin())))), 401, "aud with a path"),
        (send(&claims("aud", json!("https://push.example.net"))), 401, "aud of another origin"),
        (send(&claims("exp", json!(now - 10))), 401, "expired"),
        (send(&claims("exp", json!(now + 25 * 3600))), 401, "exp over 24 h ahead"),
        (send(&claims("sub", json!("ops@example.com"))), 401, "sub not a URL"),
        (with(send(&good), "ttl", None), 400, "no TTL"),
        (with(send(&good), "ttl", Some("soon")), 400, "TTL not a number"),
        (with(send(&good), "content-encoding", Some("aesgcm")), 400, "the draft encoding"),
        (with(send(&good), "content-encoding", None), 400, "no encoding"),
        (with(send(&good), "urgency", Some("urgent")), 400, "bad Urgency"),
        (with(send(&good), "topic", Some(&"t".repeat(33))), 400, "Topic too long"),
        (with(send(&good), "topic", Some("call:1")), 400, "Topic not base64url"),
        (with_body(send(&good), b"not encrypted at all".repeat(10)), 400, "garbage body"),
        (
            with_body(send(&good), encrypt(&subscription, &[7u8; 16], &[payload.as_bytes()], 4096)),
            400,
            "another auth secret",
        ),
        (
            with_body(
                send(&good),
                encrypt(&subscription, &auth, &[&payload.as_bytes()[..40], &payload.as_bytes()[40..80]], 64),
            ),
            400,
            "two records",
        ),
        (with_body(send(&good), vec![0u8; 4097]), 413, "too large"),
        (
            build(http1().post(format!("{}/push/unknown", push.origin())).header("authorization", &good).body(body())),
            404,
            "no such subscription",
        ),
    ];
    let count = cases.len();
    for (request, status, what) in cases {
        let response = http1().execute(request).await.expect("answered");
        assert_eq!(response.status().as_u16(), status, "{what}");
    }
    let requests = push.wait_for(count, WAIT).await;
    assert!(requests.iter().all(|r| r.refused.is_some() && r.plaintext.is_none()), "{requests:#?}");
    assert_eq!(requests[3].vapid.as_ref().map(|v| v.k.clone()), Some(other.public.clone()));
    assert_eq!(web_push(&subscription, &good, body()).send().await.expect("answered").status(), 201);
}

#[tokio::test]
async fn webpush_answers_from_the_script() {
    let key = vapid();
    let push = WebPush::start(&key.public).await;
    let (subscription, other) = (push.subscribe(), push.subscribe());
    push.respond(
        &subscription,
        vec![
            PushReply::not_found(),
            PushReply::gone(),
            PushReply::too_many_requests(7),
            PushReply::status(500),
            PushReply::status(503).retry_after_raw("Wed, 21 Oct 2065 07:28:00 GMT"),
            PushReply::hang(),
        ],
    );
    let authorization = vapid_header(&key, &vapid_claims(&push));
    let send = |s: &Subscription| {
        let body = encrypt(s, &b64(&s.auth), &[br#"{"event":"call.ring_cancelled"}"#], 4096);
        web_push(s, &authorization, body)
    };
    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = send(&subscription).send().await.expect("answered");
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("text").to_owned());
        answers.push((response.status().as_u16(), retry_after));
    }
    assert_eq!(
        answers,
        [
            (404, None),
            (410, None),
            (429, Some("7".to_owned())),
            (500, None),
            (503, Some("Wed, 21 Oct 2065 07:28:00 GMT".to_owned()))
        ]
    );
    assert_eq!(send(&other).send().await.expect("answered").status(), 201, "another subscription is unaffected");
    let hung = send(&subscription).timeout(Duration::from_millis(200)).send().await;
    assert!(hung.expect_err("no answer").is_timeout());
    assert_eq!(send(&subscription).send().await.expect("answered").status(), 201);
    let requests = push.wait_for(8, WAIT).await;
    assert_eq!(requests[6].status, None);
    assert!(requests.iter().all(|r| r.payload.as_ref().is_some_and(|p| p["event"] == "call.ring_cancelled")));
}
