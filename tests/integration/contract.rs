//! The contract suite: every endpoint, error and event of the API, run against the
//! embedded store and against Redis in every shape operators run it (standalone, Cluster,
//! Sentinel, TLS), so that none can drift.

use crate::support::{Api, Mode, RedisServer, Shape, SioClient, TestApp, assert_problem};
use livekit_api::access_token::TokenVerifier;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A replica plus a websocket client that hears its events.
struct Fixture {
    api: Api,
    sio: SioClient,
    /// `AUTH=token`, acting with a server token.
    token_mode: bool,
    _app: TestApp,
    _redis: Option<RedisServer>,
}

/// Where a fixture keeps its state.
enum Backend {
    Memory,
    /// A standalone `redis-server` of the test's own.
    Redis,
    /// `AUTH=token`, on the embedded store or a Redis of its own: the suite acts with a
    /// server token, which may act as any user and hears every event.
    Token {
        redis: bool,
    },
    /// A shared deployment of this shape, under a namespace of the test's own.
    Shaped(Shape),
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let (app, redis) = match backend {
            Backend::Memory => (TestApp::memory().await, None),
            Backend::Redis => {
                let server = RedisServer::start();
                (TestApp::redis(&server, "contract").await, Some(server))
            }
            Backend::Shaped(shape) => {
                let namespace = format!("contract-{}", uuid::Uuid::new_v4());
                (TestApp::on_shape(shape, &namespace).await, None)
            }
            Backend::Token { redis } => {
                let server = redis.then(RedisServer::start);
                (TestApp::with_flags(server.as_ref(), "contract", &crate::support::TOKEN_MODE).await, server)
            }
        };
        if let Backend::Token { .. } = backend {
            let token = switchboard::auth::Tokens::new(crate::support::AUTH_SECRET.as_bytes())
                .server(std::time::Duration::from_secs(600))
                .token;
            let sio = SioClient::connect_with(&app.base, Mode::Websocket, Some(json!({ "token": token }))).await;
            return Self { api: app.api.bearer(&token), sio, token_mode: true, _app: app, _redis: redis };
        }
        let sio = SioClient::connect(&app.base, Mode::Websocket).await;
        Self { api: app.api.clone(), sio, token_mode: false, _app: app, _redis: redis }
    }

    /// The body of an `/end` by `user`: v1's `{}`, or naming the user (a server token must).
    fn end_body(&self, user: &str) -> Value {
        if self.token_mode { json!({ "userId": user }) } else { json!({}) }
    }

    /// Registers a marker user and returns every event heard before its announcement:
    /// since events arrive in commit order, this is everything the earlier requests caused.
    async fn events_so_far(&mut self) -> Vec<(String, Value)> {
        let marker = format!("marker-{}", uuid::Uuid::new_v4());
        self.api.user(&marker).await;
        self.sio.events_until(|name, arg| name == "user.registered" && arg["data"]["name"] == marker.as_str()).await
    }
}

fn error_fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect()
}

fn is_iso_millis(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.' && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn verify_token(token: &str) -> livekit_api::access_token::Claims {
    TokenVerifier::with_api_key(crate::support::API_KEY, crate::support::API_SECRET)
        .verify(token)
        .expect("a token signed with the configured key and secret")
}

async fn registering_a_user_returns_and_announces_it(mut f: Fixture) {
    let (status, user) = f.api.post("/users", json!({ "name": "  Ana  ", "extra": true })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(user["name"], "Ana");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap_or("")).is_ok());
    assert!(is_iso_millis(&user["createdAt"]), "{user}");
    // With AUTH=token the answer also carries the user's token and its expiry.
    let fields = if f.token_mode { 5 } else { 3 };
    assert_eq!(user.as_object().map(|o| o.len()), Some(fields), "{user}");
    if f.token_mode {
        assert!(user["token"].is_string() && is_iso_millis(&user["tokenExpiresAt"]), "{user}");
    }
    let (status, fetched) = f.api.get(&format!("/users/{}", user["id"].as_str().unwrap_or(""))).await;
    let mut stored = user.clone();
    for token_field in ["token", "tokenExpiresAt"] {
        stored.as_object_mut().expect("object").remove(token_field);
    }
    assert_eq!((status, &fetched), (StatusCode::OK, &stored));
    let events = f.events_so_far().await;
    assert_eq!(events, vec![("user.registered".into(), json!({"data": {"id": user["id"], "name": "Ana"}}))]);
}

async fn invalid_names_are_refused_and_change_nothing(mut f: Fixture) {
    let long = "x".repeat(101);
    let invisible = ["\u{200B}", "\u{FEFF}", "\u{3164}", "\u{0301}", "Ana\u{0000}", "\u{202E}anA"];
    let bodies = [json!({}), json!({"name": 7}), json!({"name": "   "}), json!({"name": long}), json!({"name": null})];
    for body in bodies.into_iter().chain(invisible.map(|name| json!({ "name": name }))) {
        let (status, problem) = f.api.post("/users", body.clone()).await;
        assert_problem(status, &problem, 422, "validation_failed");
        assert_eq!(error_fields(&problem), vec!["name"], "{body}");
        let (status, problem) = f.api.post("/rooms", body).await;
        assert_problem(status, &problem, 422, "validation_failed");
    }
    let hundred = "ñ".repeat(100);
    let (status, user) = f.api.post("/users", json!({ "name": hundred })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, users) = f.api.get("/users").await;
    assert_eq!(users.as_array().map(Vec::len), Some(1), "only the valid user exists");
    let events = f.events_so_far().await;
    assert_eq!(events.len(), 1, "only the valid request emitted: {events:?}");
    assert_eq!(events[0].1["data"]["id"], user["id"]);
}

async fn bodies_are_checked_before_anything_runs(mut f: Fixture) {
    let post =
        |ct: &'static str, body: Vec<u8>| f.api.raw(Method::POST, "/users").header("content-type", ct).body(body);
    let read = |r: reqwest::Response| async move {
        let status = r.status();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (status, ct, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, ct, body) = read(post("application/json", b"{\"name\":".to_vec()).send().await.expect("sent")).await;
    assert_problem(status, &body, 400, "invalid_json");
    assert_eq!(ct, "application/problem+json");
    let (status, _, body) = read(post("application/json", b"[1,2]".to_vec()).send().await.expect("sent")).await;
    assert_problem(status, &body, 400, "invalid_json");
    let (status, _, body) = read(post("text/plain", b"{\"name\":\"Ana\"}".to_vec()).send().await.expect("sent")).await;
    assert_problem(status, &body, 415, "unsupported_media_type");
    let (status, _, body) = read(f.api.raw(Method::POST, "/users").send().await.expect("sent")).await;
    assert_problem(status, &body, 400, "invalid_json");

    // Exactly the limit (16 KiB) is accepted; one byte more is not.
    let pad = |n: usize| {
        let skeleton = br#"{"name":"Limit","pad":""}"#.len();
        format!(r#"{{"name":"Limit","pad":"{}"}}"#, "p".repeat(n - skeleton)).into_bytes()
    };
    let (status, _, body) = read(post("application/json", pad(16 * 1024 + 1)).send().await.expect("sent")).await;
    assert_problem(status, &body, 413, "payload_too_large");
    let (status, _, body) = read(post("application/json", pad(16 * 1024)).send().await.expect("sent")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let events = f.events_so_far().await;
    assert_eq!(events.len(), 1, "only the accepted body emitted: {events:?}");
}

async fn lists_are_ordered_and_limited(f: Fixture) {
    let mut ids = Vec::new();
    for name in ["u1", "u2", "u3"] {
        ids.push(f.api.user(name).await);
    }
    let (_, all) = f.api.get("/users").await;
    let listed: Vec<_> =
        all.as_array().into_iter().flatten().map(|u| u["id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(listed, ids, "oldest first");
    let (_, two) = f.api.get("/users?limit=2").await;
    assert_eq!(two.as_array().map(Vec::len), Some(2));
    assert_eq!(two[0]["id"], ids[0].as_str());
    for bad in ["0", "1001", "abc", "-1", "1.5"] {
        for list in ["/users", "/calls", "/rooms"] {
            let (status, body) = f.api.get(&format!("{list}?limit={bad}")).await;
            assert_problem(status, &body, 422, "validation_failed");
            assert_eq!(error_fields(&body), vec!["limit"]);
        }
    }
    for (name, n) in [("r1", 1), ("r2", 2)] {
        let (status, _) = f.api.post("/rooms", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "room {n}");
    }
    let (_, rooms) = f.api.get("/rooms?limit=1000").await;
    assert_eq!(rooms[0]["name"], "r1");
    assert_eq!(rooms[1]["name"], "r2");
    // Pages (section 11): two at a time, following each page's Link, the same users in the
    // same order; the last page has no Link.
    let (mut walked, mut next) = (Vec::new(), Some("/users?limit=2".to_owned()));
    while let Some(path) = next.take() {
        let response = f.api.raw(Method::GET, &path).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next = response.headers().get("link").map(|v| {
            let v = v.to_str().expect("ascii");
            let url = v.strip_prefix('<').and_then(|v| v.split_once(">; rel=\"next\"")).map(|(url, _)| url.to_owned());
            url.expect("a next link")
        });
        let page: Value = response.json().await.expect("json");
        assert!(page.as_array().is_some_and(|p| !p.is_empty() && p.len() <= 2), "{page}");
        walked.extend(page.as_array().into_iter().flatten().map(|u| u["id"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(walked, ids, "the pages hold every user once, oldest first");
    let (status, body) = f.api.get("/users?cursor=not-a-cursor").await;
    assert_problem(status, &body, 422, "validation_failed");
    assert_eq!(error_fields(&body), vec!["cursor"]);
}

async fn erasing_a_user_removes_it_everywhere_and_is_announced(mut f: Fixture) {
    let (ana, ben) = (f.api.user("Ana").await, f.api.user("Ben").await);
    let (_, room) = f.api.post("/rooms", json!({ "name": "Stand-up" })).await;
    let room_id = room["id"].as_str().unwrap_or_default().to_owned();
    for user in [&ana, &ben] {
        let (status, _) = f.api.post(&format!("/rooms/{room_id}/join"), json!({ "userId": user })).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = f.api.send(Method::DELETE, &format!("/users/{ana}"), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, json!("")));
    let deleted = loop {
        let (name, arg) = f.sio.next_event().await;
        if name == "user.deleted" {
            break arg;
        }
    };
    assert_eq!(deleted, json!({ "data": { "id": ana } }));
    let (status, body) = f.api.get(&format!("/users/{ana}")).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api.send(Method::DELETE, &format!("/users/{ana}"), None).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (_, users) = f.api.get("/users").await;
    assert_eq!(users.as_array().map(|u| u.iter().map(|u| u["id"].clone()).collect::<Vec<_>>()), Some(vec![json!(ben)]));
    let (_, room) = f.api.get(&format!("/rooms/{room_id}")).await;
    assert_eq!(room["participants"], json!([ben]));
}

async fn unknown_and_malformed_ids_are_404(f: Fixture) {
    let missing = uuid::Uuid::new_v4();
    for (path, code) in [
        (format!("/users/{missing}"), "user_not_found"),
        ("/users/not-a-uuid".to_owned(), "user_not_found"),
        (format!("/calls/{missing}"), "call_not_found"),
        ("/calls/123".to_owned(), "call_not_found"),
        (format!("/rooms/{missing}"), "room_not_found"),
        ("/rooms/x".to_owned(), "room_not_found"),
        // Percent-encoded bytes that are not UTF-8 name nothing either.
        ("/users/%FF".to_owned(), "user_not_found"),
        ("/calls/%C3%28".to_owned(), "call_not_found"),
        ("/rooms/%E2%82".to_owned(), "room_not_found"),
    ] {
        let (status, body) = f.api.get(&path).await;
        assert_problem(status, &body, 404, code);
    }
    let (status, body) = f.api.post("/calls/nope/end", json!({})).await;
    assert_problem(status, &body, 404, "call_not_found");
    let (status, body) = f.api.post(&format!("/calls/{missing}/end"), json!({})).await;
    assert_problem(status, &body, 404, "call_not_found");
    let (status, body) = f.api.post("/rooms/nope/join", json!({ "userId": missing })).await;
    assert_problem(status, &body, 404, "room_not_found");
    let (status, body) = f.api.post("/calls/%FF/end", json!({})).await;
    assert_problem(status, &body, 404, "call_not_found");
    let (status, body) = f.api.get("/no/such/endpoint").await;
    assert_problem(status, &body, 404, "not_found");
}

async fn starting_a_call_returns_a_token_and_announces_the_call(mut f: Fixture) {
    let (ana, ben) = (f.api.user("Ana").await, f.api.user("Ben").await);
    f.events_so_far().await;
    let (status, call) = f.api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!(call["callId"], call["id"]);
    assert_eq!((call["fromUserId"].as_str(), call["toUserId"].as_str()), (Some(ana.as_str()), Some(ben.as_str())));
    assert_eq!(call["status"], "initiated");
    assert_eq!(call["endTime"], Value::Null);
    assert!(is_iso_millis(&call["startTime"]));
    assert_ne!(call["roomName"], call["id"]);
    assert_eq!(call["url"], "wss://livekit.test");
    let claims = verify_token(call["token"].as_str().unwrap_or(""));
    assert_eq!(claims.sub, ana);
    assert_eq!(claims.name, "Ana");
    assert_eq!(claims.iss, crate::support::API_KEY);
    assert_eq!(claims.video.room, call["roomName"].as_str().unwrap_or(""));
    assert!(claims.video.room_join);
    assert!(!claims.video.room_admin && !claims.video.room_create && !claims.video.room_list);
    assert_eq!(
        (claims.video.can_publish, claims.video.can_subscribe, claims.video.can_publish_data),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(u64::try_from(claims.exp - claims.nbf).ok(), Some(crate::support::TOKEN_TTL_S));

    let mut stored = call.clone();
    let obj = stored.as_object_mut().expect("object");
    obj.remove("token");
    obj.remove("url");
    let (_, fetched) = f.api.get(&format!("/calls/{}", call["id"].as_str().unwrap_or(""))).await;
    assert_eq!(fetched, stored);
    assert_eq!((&call["answerTime"], &call["endReason"], &call["endedBy"]), (&Value::Null, &Value::Null, &Value::Null));
    let mut announced = stored.clone();
    for v2 in ["endTime", "answerTime", "endReason", "endedBy"] {
        announced.as_object_mut().expect("object").remove(v2);
    }
    let events = f.events_so_far().await;
    assert_eq!(events, vec![("call.started".into(), json!({ "data": announced }))]);
    assert!(!serde_json::to_string(&events).unwrap_or_default().contains(call["token"].as_str().unwrap_or("-")));
}

async fn invalid_calls_are_refused_and_change_nothing(mut f: Fixture) {
    let ana = f.api.user("Ana").await;
    let ghost = uuid::Uuid::new_v4().to_string();
    f.events_so_far().await;
    let (status, body) = f.api.post("/calls", json!({ "fromUserId": ana, "toUserId": ghost })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api.post("/calls", json!({ "fromUserId": ghost, "toUserId": ana })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api.post("/calls", json!({ "fromUserId": ana, "toUserId": ana })).await;
    assert_problem(status, &body, 422, "validation_failed");
    let (status, body) = f.api.post("/calls", json!({ "fromUserId": "nope", "toUserId": 3 })).await;
    assert_problem(status, &body, 422, "validation_failed");
    assert_eq!(error_fields(&body), vec!["fromUserId", "toUserId"]);
    let (_, calls) = f.api.get("/calls").await;
    assert_eq!(calls, json!([]));
    assert_eq!(f.events_so_far().await, vec![]);
}

async fn ending_a_call_twice_emits_one_event(mut f: Fixture) {
    let (ana, ben) = (f.api.user("Ana").await, f.api.user("Ben").await);
    let (_, call) = f.api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    let id = call["id"].as_str().unwrap_or("").to_owned();
    f.events_so_far().await;
    let (status, ended) = f.api.post(&format!("/calls/{id}/end"), f.end_body(&ana)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ended["status"], "ended");
    assert!(is_iso_millis(&ended["endTime"]));
    assert_eq!(ended["startTime"], call["startTime"]);
    // No body at all is fine too (a server token must name who ends it), and ending
    // again returns the call as it is.
    let mut again = f.api.raw(Method::POST, &format!("/calls/{id}/end"));
    if f.token_mode {
        again = again.json(&f.end_body(&ben));
    }
    let again = again.send().await.expect("sent");
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.expect("json"), ended);
    let (_, fetched) = f.api.get(&format!("/calls/{id}")).await;
    assert_eq!(fetched, ended);
    let events = f.events_so_far().await;
    assert_eq!(events, vec![("call.ended".into(), json!({ "data": { "callId": id } }))]);
}

async fn calls_are_listed_newest_first_and_filtered(f: Fixture) {
    let (a, b, c) = (f.api.user("A").await, f.api.user("B").await, f.api.user("C").await);
    let mut ids = Vec::new();
    for (from, to) in [(&a, &b), (&b, &c), (&c, &a), (&a, &b)] {
        let (_, call) = f.api.post("/calls", json!({ "fromUserId": from, "toUserId": to })).await;
        ids.push(call["id"].as_str().unwrap_or("").to_owned());
    }
    f.api.post(&format!("/calls/{}/end", ids[1]), f.end_body(&b)).await;
    let listed = |v: Value| -> Vec<String> {
        v.as_array().into_iter().flatten().map(|c| c["id"].as_str().unwrap_or("").to_owned()).collect()
    };
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(f.api.get("/calls").await.1), newest_first);
    assert_eq!(listed(f.api.get("/calls?limit=2").await.1), newest_first[..2]);
    assert_eq!(
        listed(f.api.get(&format!("/calls?userId={b}")).await.1),
        vec![ids[3].clone(), ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(listed(f.api.get("/calls?status=ended").await.1), vec![ids[1].clone()]);
    assert_eq!(
        listed(f.api.get(&format!("/calls?userId={a}&status=initiated")).await.1),
        vec![ids[3].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(listed(f.api.get(&format!("/calls?userId={a}&status=ended")).await.1), Vec::<String>::new());
    for query in ["status=active", "userId=nope"] {
        let (status, body) = f.api.get(&format!("/calls?{query}")).await;
        assert_problem(status, &body, 422, "validation_failed");
    }
}

async fn rooms_are_created_and_joined_once_per_user(mut f: Fixture) {
    let (ana, ben) = (f.api.user("Ana").await, f.api.user("Ben").await);
    f.events_so_far().await;
    let (status, room) = f.api.post("/rooms", json!({ "name": " Daily stand-up " })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(room["name"], "Daily stand-up");
    assert_eq!(room["participants"], json!([]));
    assert!(is_iso_millis(&room["createdAt"]));
    assert_ne!(room["roomName"], room["id"]);
    let id = room["id"].as_str().unwrap_or("").to_owned();

    let mut joins = Vec::new();
    for user in [&ben, &ana, &ben] {
        let (status, joined) = f.api.post(&format!("/rooms/{id}/join"), json!({ "userId": user })).await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!((joined["roomId"].as_str(), joined["userId"].as_str()), (Some(id.as_str()), Some(user.as_str())));
        assert_eq!(joined["roomName"], room["roomName"]);
        assert_eq!(joined["url"], "wss://livekit.test");
        let claims = verify_token(joined["token"].as_str().unwrap_or(""));
        assert_eq!(
            (claims.sub.as_str(), claims.video.room.as_str()),
            (user.as_str(), room["roomName"].as_str().unwrap_or(""))
        );
        joins.push(joined);
    }
    assert_eq!(joins[2]["room"]["participants"], json!([ben, ana]), "first-join order, each once");
    let (_, fetched) = f.api.get(&format!("/rooms/{id}")).await;
    assert_eq!(fetched, joins[2]["room"]);

    let (status, body) = f.api.post(&format!("/rooms/{id}/join"), json!({ "userId": uuid::Uuid::new_v4() })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api.post(&format!("/rooms/{}/join", uuid::Uuid::new_v4()), json!({ "userId": ana })).await;
    assert_problem(status, &body, 404, "room_not_found");
    let (status, body) = f.api.post(&format!("/rooms/{id}/join"), json!({ "userId": "x" })).await;
    assert_problem(status, &body, 422, "validation_failed");

    let mut expected_room = room.clone();
    let obj = expected_room.as_object_mut().expect("object");
    obj.remove("createdAt");
    let joined = |u: &String| ("room.joined".to_owned(), json!({ "data": { "roomId": id, "userId": u } }));
    let events = f.events_so_far().await;
    assert_eq!(
        events,
        vec![("room.created".into(), json!({ "data": expected_room })), joined(&ben), joined(&ana), joined(&ben)]
    );
}

async fn tokens_go_only_to_those_who_may_join(mut f: Fixture) {
    let (ana, ben, eve) = (f.api.user("Ana").await, f.api.user("Ben").await, f.api.user("Eve").await);
    let (_, call) = f.api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    let room_name = call["roomName"].clone();
    f.events_so_far().await;

    let (status, grant) = f.api.post("/livekit/token", json!({ "roomName": room_name, "userId": ana })).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let call_id = call["id"].as_str().unwrap_or("");
    let (_, still) = f.api.get(&format!("/calls/{call_id}")).await;
    assert_eq!(still["status"], "initiated", "the caller's token request changes nothing");
    assert!(f.events_so_far().await.is_empty());

    let (status, grant) = f.api.post("/livekit/token", json!({ "roomName": room_name, "userId": ben })).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!((grant["roomName"].clone(), grant["identity"].as_str()), (room_name.clone(), Some(ben.as_str())));
    assert_eq!(grant["url"], "wss://livekit.test");
    let claims = verify_token(grant["token"].as_str().unwrap_or(""));
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), (ben.as_str(), "Ben"));
    let (_, accepted) = f.api.get(&format!("/calls/{call_id}")).await;
    assert_eq!(accepted["status"], "accepted", "the callee's token request answers the ringing call");
    let heard = f.events_so_far().await;
    let expected = json!({ "data": { "callId": call_id, "userId": ben, "answerTime": accepted["answerTime"] } });
    assert_eq!(heard, vec![("call.accepted".to_owned(), expected)]);

    let (status, body) = f.api.post("/livekit/token", json!({ "roomName": room_name, "userId": eve })).await;
    assert_problem(status, &body, 403, "not_a_participant");
    let (status, body) = f.api.post("/livekit/token", json!({ "roomName": uuid::Uuid::new_v4(), "userId": ben })).await;
    assert_problem(status, &body, 404, "room_not_found");
    let (status, body) =
        f.api.post("/livekit/token", json!({ "roomName": room_name, "userId": uuid::Uuid::new_v4() })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api.post("/livekit/token", json!({ "roomName": "x" })).await;
    assert_problem(status, &body, 422, "validation_failed");
    // With AUTH=token, `userId` may be left out (it names the actor), here caught later.
    let expected = if f.token_mode { vec!["roomName"] } else { vec!["roomName", "userId"] };
    assert_eq!(error_fields(&body), expected);

    f.api.post(&format!("/calls/{}/end", call["id"].as_str().unwrap_or("")), f.end_body(&ana)).await;
    let (status, body) = f.api.post("/livekit/token", json!({ "roomName": room_name, "userId": ben })).await;
    assert_problem(status, &body, 409, "call_ended");

    let (_, room) = f.api.post("/rooms", json!({ "name": "R" })).await;
    let body = json!({ "roomName": room["roomName"], "userId": eve });
    let (status, problem) = f.api.post("/livekit/token", body.clone()).await;
    assert_problem(status, &problem, 403, "not_a_participant");
    f.api.post(&format!("/rooms/{}/join", room["id"].as_str().unwrap_or("")), json!({ "userId": eve })).await;
    let (status, grant) = f.api.post("/livekit/token", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify_token(grant["token"].as_str().unwrap_or("")).video.room, room["roomName"].as_str().unwrap_or(""));

    let names: Vec<_> = f.events_so_far().await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["call.ended", "room.created", "room.joined"], "other token requests emit nothing");
}

async fn operations_endpoints_and_cors_answer(f: Fixture) {
    assert_eq!(f.api.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(f.api.get("/readyz").await.0, StatusCode::OK);
    f.api.user("Ana").await;
    let metrics = f.api.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    assert!(
        metrics.contains("switchboard_http_requests_total{method=\"POST\",route=\"/users\",status=\"201\"}"),
        "{metrics}"
    );
    let preflight = f.api.preflight("/calls", "https://app.example").await;
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    // A page's Link is readable by a script on another origin.
    let listed = f.api.raw(Method::GET, "/users?limit=1").header("origin", "https://app.example").send().await;
    let exposed = listed.expect("sent").headers().get("access-control-expose-headers").cloned();
    assert!(exposed.is_some_and(|v| v.to_str().unwrap_or("").to_ascii_lowercase().contains("link")), "Link exposed");
    let polling = f
        .api
        .raw(Method::GET, "/socket.io/?EIO=4&transport=polling")
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(polling.status(), StatusCode::OK);
    assert_eq!(polling.headers()["access-control-allow-origin"], "*");
    let (status, body) = f.api.send(Method::DELETE, "/users", None).await;
    assert_problem(status, &body, 405, "method_not_allowed");
}

/// Runs each contract test against every store.
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        on_every_store!(@on memory, super::Backend::Memory; $($test),*);
        on_every_store!(@on redis, super::Backend::Redis; $($test),*);
        on_every_store!(@on redis_cluster, super::Backend::Shaped(super::Shape::Cluster); $($test),*);
        on_every_store!(@on redis_sentinel, super::Backend::Shaped(super::Shape::Sentinel); $($test),*);
        on_every_store!(@on redis_tls, super::Backend::Shaped(super::Shape::Tls); $($test),*);
        on_every_store!(@on memory_token, super::Backend::Token { redis: false }; $($test),*);
        on_every_store!(@on redis_token, super::Backend::Token { redis: true }; $($test),*);
    };
    (@on $module:ident, $backend:expr; $($test:ident),*) => {
        mod $module {
            $(#[tokio::test] async fn $test() { super::$test(super::Fixture::new($backend).await).await })*
        }
    };
}

on_every_store!(
    registering_a_user_returns_and_announces_it,
    invalid_names_are_refused_and_change_nothing,
    bodies_are_checked_before_anything_runs,
    lists_are_ordered_and_limited,
    erasing_a_user_removes_it_everywhere_and_is_announced,
    unknown_and_malformed_ids_are_404,
    starting_a_call_returns_a_token_and_announces_the_call,
    invalid_calls_are_refused_and_change_nothing,
    ending_a_call_twice_emits_one_event,
    calls_are_listed_newest_first_and_filtered,
    rooms_are_created_and_joined_once_per_user,
    tokens_go_only_to_those_who_may_join,
    operations_endpoints_and_cors_answer,
);
