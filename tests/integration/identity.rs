//! `AUTH=token` (sections 8 and 9 of the contract): tokens on REST and Socket.IO, each
//! event only to its audience on every replica, and resuming after a reconnect; on the
//! embedded store and on two replicas sharing a Redis.

use crate::support::{
    AUTH_SECRET, Api, Mode, Poller, Proxy, RedisServer, SioClient, TOKEN_MODE, TestApp, assert_problem,
};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::auth::Tokens;
use switchboard::events::Offset;

enum Backend {
    Memory,
    /// Two replicas on one Redis.
    Redis,
}

/// Replicas in token mode; requests alternate between them.
struct Fixture {
    apis: Vec<Api>,
    _apps: Vec<TestApp>,
    _redis: Option<RedisServer>,
}

/// A registered user and what they act with.
#[derive(Clone)]
struct Person {
    id: String,
    token: String,
    api: Api,
}

impl Fixture {
    async fn new(backend: Backend, extra: &[&str]) -> Self {
        let flags: Vec<&str> = TOKEN_MODE.iter().chain(extra).copied().collect();
        let (apps, redis) = match backend {
            Backend::Memory => (vec![TestApp::with_flags(None, "unused", &flags).await], None),
            Backend::Redis => {
                let server = RedisServer::start();
                let a = TestApp::with_flags(Some(&server), "identity", &flags).await;
                let b = TestApp::with_flags(Some(&server), "identity", &flags).await;
                (vec![a, b], Some(server))
            }
        };
        Self { apis: apps.iter().map(|a| a.api.clone()).collect(), _apps: apps, _redis: redis }
    }

    fn api(&self, n: usize) -> &Api {
        &self.apis[n % self.apis.len()]
    }

    fn base(&self, n: usize) -> &str {
        self.api(n).base()
    }

    /// Registers `name` (on replica `n`); the answer carries the user's token.
    async fn person(&self, n: usize, name: &str) -> Person {
        let (status, user) = self.api(n).post("/users", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let token = user["token"].as_str().expect("a token with AUTH=token").to_owned();
        let expires = chrono::DateTime::parse_from_rfc3339(user["tokenExpiresAt"].as_str().unwrap_or("")).expect("ISO");
        assert!(expires > chrono::Utc::now() + chrono::Duration::hours(23), "AUTH_TOKEN_TTL defaults to a day");
        let id = user["id"].as_str().unwrap_or_default().to_owned();
        Person { api: self.api(n + 1).bearer(&token), id, token }
    }

    fn server(&self, n: usize) -> Api {
        self.api(n).bearer(&Tokens::new(AUTH_SECRET.as_bytes()).server(Duration::from_secs(600)).token)
    }
}

fn signed(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signs")
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

async fn rest_needs_a_token_and_acts_as_its_user(f: Fixture) {
    let (ana, ben, eve) = (f.person(0, "Ana").await, f.person(1, "Ben").await, f.person(0, "Eve").await);
    let anonymous = f.api(0);
    let user_token = |sub: &str, exp: u64| signed(json!({ "sub": sub, "exp": exp }), AUTH_SECRET);
    let refused_tokens = [
        None,
        Some("not-a-jwt".to_owned()),
        Some(user_token(&ana.id, now_s() - 120)),
        Some(user_token(&ana.id, now_s() + 60).replace('.', "x.")),
        Some(signed(json!({ "sub": ana.id, "exp": now_s() + 60 }), "another-secret-of-at-least-32-bytes!!")),
        Some(signed(json!({ "sub": ana.id }), AUTH_SECRET)),
        Some(user_token(&uuid::Uuid::new_v4().to_string(), now_s() + 60)),
    ];
    for token in refused_tokens {
        let api = token.as_deref().map_or(anonymous.clone(), |t| anonymous.bearer(t));
        for (method, path) in [(Method::GET, "/users"), (Method::GET, "/rooms"), (Method::GET, "/calls")] {
            let res = api.raw(method, path).send().await.expect("sent");
            assert_eq!(res.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
            let status = res.status();
            assert_problem(status, &res.json().await.expect("json"), 401, "unauthorized");
        }
        let (status, body) = api.post("/calls", json!({ "fromUserId": ana.id, "toUserId": ben.id })).await;
        assert_problem(status, &body, 401, "unauthorized");
    }
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(anonymous.get(open).await.0, StatusCode::OK, "{open}");
    }
    // A browser on another origin may send the token: the preflight allows `Authorization`.
    let preflight = anonymous
        .raw(Method::OPTIONS, "/calls")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("sent");
    let allowed = preflight.headers().get("access-control-allow-headers").and_then(|v| v.to_str().ok());
    assert!(allowed.is_some_and(|h| h.to_ascii_lowercase().contains("authorization")), "{allowed:?}");

    let (status, call) = ana.api.post("/calls", json!({ "toUserId": ben.id })).await;
    assert_eq!((status, call["fromUserId"].as_str()), (StatusCode::CREATED, Some(ana.id.as_str())), "{call}");
    let (status, body) = ana.api.post("/calls", json!({ "fromUserId": ben.id, "toUserId": eve.id })).await;
    assert_problem(status, &body, 403, "forbidden");
    let path = format!("/calls/{}", call["id"].as_str().unwrap_or(""));
    for (method, suffix) in
        [(Method::GET, ""), (Method::POST, "/accept"), (Method::POST, "/decline"), (Method::POST, "/end")]
    {
        let (status, body) = eve.api.send(method, &format!("{path}{suffix}"), Some(json!({}))).await;
        assert_problem(status, &body, 404, "call_not_found");
    }
    let (status, body) = ben.api.post(&format!("{path}/accept"), json!({ "userId": ana.id })).await;
    assert_problem(status, &body, 403, "forbidden");
    let res = ben.api.raw(Method::POST, &format!("{path}/accept")).send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::OK, "no body: the token's user answers");
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    let (status, body) = eve.api.post("/livekit/token", json!({ "roomName": call["roomName"] })).await;
    assert_problem(status, &body, 403, "not_a_participant");
    let (status, body) =
        eve.api.post("/livekit/token", json!({ "roomName": call["roomName"], "userId": ben.id })).await;
    assert_problem(status, &body, 403, "forbidden");
    let (status, grant) = ben.api.post("/livekit/token", json!({ "roomName": call["roomName"] })).await;
    assert_eq!((status, grant["identity"].as_str()), (StatusCode::OK, Some(ben.id.as_str())));

    let (_, mine) = ana.api.get("/calls").await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(eve.api.get("/calls").await.1, json!([]), "a user lists only their own calls");
    let (status, body) = eve.api.get(&format!("/calls?userId={}", ana.id)).await;
    assert_problem(status, &body, 403, "forbidden");
    assert_eq!(eve.api.get(&format!("/calls?userId={}", eve.id)).await.0, StatusCode::OK);
    let (status, users) = eve.api.get("/users").await;
    assert_eq!((status, users.as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "users are visible to all");

    let server = f.server(1);
    let (_, all) = server.get(&format!("/calls?userId={}", ana.id)).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (status, body) = server.post("/calls", json!({ "toUserId": eve.id })).await;
    assert_problem(status, &body, 422, "validation_failed");
    let (status, other) = server.post("/calls", json!({ "fromUserId": eve.id, "toUserId": ana.id })).await;
    assert_eq!((status, other["fromUserId"].as_str()), (StatusCode::CREATED, Some(eve.id.as_str())));
    let (status, body) = server.post(&format!("{path}/end"), json!({})).await;
    assert_problem(status, &body, 422, "validation_failed");
    let (status, ended) = server.post(&format!("{path}/end"), json!({ "userId": ana.id })).await;
    assert_eq!((status, ended["endedBy"].as_str()), (StatusCode::OK, Some(ana.id.as_str())));

    let (_, room) = eve.api.post("/rooms", json!({ "name": "R" })).await;
    let join = format!("/rooms/{}/join", room["id"].as_str().unwrap_or(""));
    let (status, body) = eve.api.post(&join, json!({ "userId": ana.id })).await;
    assert_problem(status, &body, 403, "forbidden");
    let (status, joined) = eve.api.post(&join, json!({})).await;
    assert_eq!((status, joined["userId"].as_str()), (StatusCode::OK, Some(eve.id.as_str())));
    let (status, joined) = server.post(&join, json!({ "userId": ben.id })).await;
    assert_eq!((status, joined["room"]["participants"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
}

async fn sockets_need_a_token(f: Fixture) {
    let ana = f.person(0, "Ana").await;
    for auth in [None, Some(json!({})), Some(json!({ "token": "nope" })), Some(json!({ "token": 7 }))] {
        assert_eq!(SioClient::refused(f.base(0), auth).await, "unauthorized");
    }
    let expired = signed(json!({ "sub": ana.id, "exp": now_s() - 120 }), AUTH_SECRET);
    assert_eq!(SioClient::refused(f.base(1), Some(json!({ "token": expired }))).await, "unauthorized");
    SioClient::connect_with(f.base(1), Mode::Polling, Some(json!({ "token": ana.token }))).await;
}

/// What a client heard, as (name, data, offset), up to a marker everyone hears.
async fn heard_until(client: &mut SioClient, marker: &str) -> Vec<(String, Value, Option<String>)> {
    client
        .events_until(|name, arg| name == "user.registered" && arg["data"]["name"] == marker)
        .await
        .into_iter()
        .map(|(name, arg)| {
            let offset = arg.get("offset").and_then(Value::as_str).map(str::to_owned);
            let keys: Vec<_> = arg.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            assert!(keys.iter().all(|k| k == "data" || k == "offset"), "{arg}");
            (name, arg["data"].clone(), offset)
        })
        .collect()
}

/// Many users with clients on both replicas, over every transport, and a server client:
/// each hears exactly the events of its audiences, once, in commit order.
async fn each_client_hears_exactly_its_audience(f: Fixture) {
    const USERS: usize = 6;
    let mut people = Vec::new();
    for n in 0..USERS {
        people.push(f.person(n, &format!("user-{n}")).await);
    }
    let modes = [Mode::Websocket, Mode::Polling, Mode::Upgrade];
    let mut clients = Vec::new();
    for (n, person) in people.iter().enumerate() {
        for replica in 0..2 {
            let mode = modes[(n + replica) % modes.len()];
            let client = SioClient::connect_with(f.base(replica), mode, Some(json!({ "token": person.token }))).await;
            clients.push((n, client));
        }
    }
    let server_token = Tokens::new(AUTH_SECRET.as_bytes()).server(Duration::from_secs(600)).token;
    let mut server = SioClient::connect_with(f.base(1), Mode::Upgrade, Some(json!({ "token": server_token }))).await;

    // Calls between neighbours, each taken somewhere else in its life; a room joined by some.
    let mut expected: Vec<Vec<(String, Value)>> = vec![Vec::new(); USERS];
    let mut everything = Vec::new();
    for n in 0..USERS {
        let (caller, callee) = (&people[n], &people[(n + 1) % USERS]);
        let (_, call) = caller.api.post("/calls", json!({ "toUserId": callee.id })).await;
        let id = call["id"].as_str().unwrap_or_default().to_owned();
        let mut events = vec![(
            "call.started".to_owned(),
            json!({
            "id": id, "callId": id, "fromUserId": caller.id, "toUserId": callee.id, "status": "initiated",
            "roomName": call["roomName"], "startTime": call["startTime"] }),
        )];
        if n % 2 == 0 {
            let (_, accepted) = callee.api.post(&format!("/calls/{id}/accept"), json!({})).await;
            events.push((
                "call.accepted".into(),
                json!({ "callId": id, "userId": callee.id, "answerTime": accepted["answerTime"] }),
            ));
            caller.api.post(&format!("/calls/{id}/end"), json!({})).await;
        } else {
            callee.api.post(&format!("/calls/{id}/decline"), json!({ "reason": "busy" })).await;
            events.push(("call.declined".into(), json!({ "callId": id, "userId": callee.id, "reason": "busy" })));
        }
        events.push(("call.ended".into(), json!({ "callId": id })));
        for event in events {
            expected[n].push(event.clone());
            expected[(n + 1) % USERS].push(event.clone());
            everything.push(event);
        }
    }
    let (_, room) = people[0].api.post("/rooms", json!({ "name": "Stand-up" })).await;
    let created = (
        "room.created".to_owned(),
        json!({ "id": room["id"], "name": "Stand-up", "roomName": room["roomName"], "participants": [] }),
    );
    everything.push(created.clone());
    for list in &mut expected {
        list.push(created.clone());
    }
    let mut members = Vec::new();
    for n in [1, 3, 4] {
        people[n].api.post(&format!("/rooms/{}/join", room["id"].as_str().unwrap_or("")), json!({})).await;
        members.push(n);
        let joined = ("room.joined".to_owned(), json!({ "roomId": room["id"], "userId": people[n].id }));
        for &m in &members {
            expected[m].push(joined.clone());
        }
        everything.push(joined);
    }

    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    f.api(0).post("/users", json!({ "name": marker })).await;
    for (n, client) in &mut clients {
        let heard = heard_until(client, &marker).await;
        let bare: Vec<(String, Value)> = heard.iter().map(|(name, data, _)| (name.clone(), data.clone())).collect();
        assert_eq!(bare, expected[*n], "user {n} heard something else than its audiences' events");
        for (name, _, offset) in &heard {
            assert_eq!(offset.is_some(), name != "room.created", "{name}: offsets only on addressed events");
        }
        let offsets: Vec<_> = heard.iter().filter_map(|(_, _, o)| o.clone()).collect();
        let mut sorted = offsets.clone();
        sorted.sort_by_key(|o| o.split('-').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>());
        assert_eq!(offsets, sorted, "offsets increase per user");
        let text = serde_json::to_string(&heard).unwrap_or_default();
        for person in &people {
            assert!(!text.contains(&person.token), "a token reached a socket");
        }
    }
    let heard = heard_until(&mut server, &marker).await;
    let bare: Vec<(String, Value)> = heard.iter().map(|(name, data, _)| (name.clone(), data.clone())).collect();
    let registered: Vec<_> = bare.iter().filter(|(n, _)| n != "user.registered").cloned().collect();
    assert_eq!(registered, everything, "a server connection hears every event");
    assert!(heard.iter().all(|(_, _, offset)| offset.is_none()), "server connections get live events only");
}

/// A connection hears every event for its user from the moment it is acknowledged: a
/// call placed right after `connect` reaches it. (The window this guards, between the
/// acknowledgement and the connect handler's task, is too narrow to hit from here every
/// time; `loadtest/sockets.js` in token mode hit it under load before it was closed.)
async fn a_fresh_connection_hears_what_follows_its_connect(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    for n in 0..20 {
        let mode = if n % 2 == 0 { Mode::Websocket } else { Mode::Polling };
        let mut phone = SioClient::connect_with(f.base(n), mode, Some(json!({ "token": ben.token }))).await;
        let call = ring(&ana, &ben, false).await;
        let (name, arg) = phone.next_event().await;
        assert_eq!((name.as_str(), arg["data"]["callId"].as_str()), ("call.started", Some(call.as_str())), "try {n}");
    }
}

/// A call's events as a callee hears them.
async fn ring(caller: &Person, callee: &Person, end: bool) -> String {
    let (status, call) = caller.api.post("/calls", json!({ "toUserId": callee.id })).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let id = call["id"].as_str().unwrap_or_default().to_owned();
    if end {
        caller.api.post(&format!("/calls/{id}/end"), json!({})).await;
    }
    id
}

/// A client that was away while calls started and ended comes back (on the other replica)
/// with its last offset: it first receives exactly what it missed, in order, then live
/// events; a reference client that never left heard the same. Over every transport, and
/// with an upgrade that completes only once the replay has begun (a slow network).
async fn a_reconnecting_client_receives_what_it_missed(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let auth = |offset: Option<&str>| Some(json!({ "token": ben.token, "offset": offset }));
    let mut steady = SioClient::connect_with(f.base(0), Mode::Websocket, auth(None)).await;
    let last = offset_before_leaving(&f, &ana, &ben).await;
    for n in 0..3 {
        ring(&ana, &ben, n != 1).await;
    }
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    f.api(0).post("/users", json!({ "name": marker })).await;
    let mut expected: Vec<_> = heard_until(&mut steady, &marker).await.into_iter().skip(1).collect();
    assert_eq!(expected.len(), 5, "{expected:?}");

    for mode in [Mode::LateUpgrade, Mode::Upgrade, Mode::Polling, Mode::Websocket] {
        let mut back = SioClient::connect_with(f.base(1), mode, auth(Some(&last))).await;
        ring(&ana, &ben, false).await;
        let marker = format!("marker-{}", uuid::Uuid::new_v4());
        f.api(1).post("/users", json!({ "name": marker })).await;
        let resumed: Vec<_> = heard_until(&mut back, &marker).await;
        let reference: Vec<_> = heard_until(&mut steady, &marker).await;
        let strip = |list: Vec<(String, Value, Option<String>)>| -> Vec<_> {
            list.into_iter().filter(|(n, _, _)| n != "user.registered").collect()
        };
        expected.extend(strip(reference));
        assert_eq!(strip(resumed), expected, "{mode:?}: the missed events in order, then the live ones, once");
    }
}

/// A reconnect while the user's events keep coming: no gap and no duplicate between the
/// replay and the live stream.
async fn a_replay_racing_live_events_has_no_gap_and_no_duplicate(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let auth = |offset: Option<&str>| Some(json!({ "token": ben.token, "offset": offset }));
    let mut steady = SioClient::connect_with(f.base(1), Mode::Websocket, auth(None)).await;
    ring(&ana, &ben, true).await;
    let (_, first) = steady.next_event().await;
    let from = first["offset"].as_str().unwrap_or_default().to_owned();
    let (caller, callee) = (ana.clone(), ben.clone());
    let traffic = tokio::spawn(async move {
        for _ in 0..15 {
            ring(&caller, &callee, true).await;
        }
    });
    let mut racer = SioClient::connect_with(f.base(0), Mode::Polling, auth(Some(&from))).await;
    traffic.await.expect("traffic");
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    f.api(0).post("/users", json!({ "name": marker })).await;
    let reference: Vec<_> = heard_until(&mut steady, &marker).await;
    let raced = heard_until(&mut racer, &marker).await;
    let strip = |list: Vec<(String, Value, Option<String>)>| -> Vec<_> {
        list.into_iter().filter(|(n, _, _)| n != "user.registered").collect()
    };
    let reference = strip(reference);
    assert_eq!(reference.len(), 1 + 15 * 2, "{reference:?}");
    assert_eq!(strip(raced), reference, "everything after the offset, once, in order");
}

/// The calls' events as their callee hears them: (name, callId) of each start and end.
fn started_and_ended(calls: &[String]) -> Vec<(String, String)> {
    calls.iter().flat_map(|c| [("call.started".to_owned(), c.clone()), ("call.ended".to_owned(), c.clone())]).collect()
}

/// (name, callId) of heard events, checking that their offsets increase.
fn names_and_calls(heard: &[(String, Value)]) -> Vec<(String, String)> {
    let offsets: Vec<_> = heard.iter().map(|(_, arg)| arg["offset"].as_str().and_then(Offset::parse)).collect();
    assert!(offsets.iter().all(Option::is_some), "every event has an offset");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    heard
        .iter()
        .map(|(name, arg)| (name.clone(), arg["data"]["callId"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// A connection that stops reading while its user's events keep coming (its socket's
/// buffer fills up) gets every one of them, in order, once it reads again, although no
/// further event of its user comes to wake it.
async fn a_connection_that_falls_behind_catches_up_by_itself(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let phone = Poller::connect(f.base(0), json!({ "token": ben.token })).await;
    let mut calls = Vec::new();
    for _ in 0..150 {
        calls.push(ring(&ana, &ben, true).await);
    }
    let last = calls.last().cloned().unwrap_or_default();
    let heard = phone.events_until(|name, arg| name == "call.ended" && arg["data"]["callId"] == last.as_str()).await;
    assert_eq!(names_and_calls(&heard), started_and_ended(&calls), "every event once, in order");
}

/// A client resuming with an offset before a whole history (1,000 events, the default
/// EVENT_HISTORY) gets all of it, over polling and over websocket, with no further traffic,
/// although its socket's buffer holds far fewer.
async fn a_resume_of_a_full_history_completes_by_itself(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let last = offset_before_leaving(&f, &ana, &ben).await;
    let mut calls = Vec::new();
    for _ in 0..499 {
        calls.push(ring(&ana, &ben, true).await);
    }
    let ringing = ring(&ana, &ben, false).await;
    let mut expected = started_and_ended(&calls);
    expected.push(("call.started".to_owned(), ringing));
    assert_eq!(expected.len(), 999, "with the offset's own event, the history is full");
    for mode in [Mode::Polling, Mode::Websocket] {
        let mut back =
            SioClient::connect_with(f.base(1), mode, Some(json!({ "token": ben.token, "offset": last }))).await;
        let mut heard = Vec::new();
        while heard.len() < expected.len() {
            heard.push(back.next_event().await);
        }
        assert_eq!(names_and_calls(&heard), expected, "{mode:?}: the whole history, once, in order");
    }
}

/// A server connection that could not take an event (it keeps no history) is told so with
/// `session.resync` once it reads again, then hears the live stream.
async fn a_server_connection_that_lost_events_gets_a_resync(f: Fixture) {
    let token = Tokens::new(AUTH_SECRET.as_bytes()).server(Duration::from_secs(600)).token;
    let backend = Poller::connect(f.base(0), json!({ "token": token })).await;
    let names: Vec<String> = (0..200).map(|n| format!("user-{n}")).collect();
    for (n, name) in names.iter().enumerate() {
        f.api(n).post("/users", json!({ "name": name })).await;
    }
    let heard = backend.events_until(|name, _| name == "session.resync").await;
    let before: Vec<_> = heard[..heard.len() - 1].iter().map(|(_, arg)| arg["data"]["name"].clone()).collect();
    assert!(before.len() < names.len(), "some events could not be taken");
    assert_eq!(before, names[..before.len()], "what came before the resync came in order");
    assert_eq!(heard[heard.len() - 1].1, json!({ "data": {} }));
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    f.api(0).post("/users", json!({ "name": marker })).await;
    let after = backend.events_until(|_, arg| arg["data"]["name"] == marker.as_str()).await;
    assert!(after.iter().all(|(name, _)| name == "user.registered"), "then live events: {after:?}");
}

/// Connects `callee`, rings them once and leaves: the offset of that `call.started`.
async fn offset_before_leaving(f: &Fixture, caller: &Person, callee: &Person) -> String {
    let auth = Some(json!({ "token": callee.token }));
    let mut phone = SioClient::connect_with(f.base(0), Mode::Websocket, auth).await;
    ring(caller, callee, false).await;
    let (_, first) = phone.next_event().await;
    first["offset"].as_str().expect("an offset").to_owned()
}

/// An offset that is no longer kept, or was never one: `session.resync` first, then live.
async fn an_offset_older_than_the_history_asks_for_a_resync(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let auth = |offset: Option<&str>| Some(json!({ "token": ben.token, "offset": offset }));
    let old = offset_before_leaving(&f, &ana, &ben).await;
    for _ in 0..3 {
        ring(&ana, &ben, true).await;
    }
    for offset in [old.as_str(), "1-0", "not-an-offset"] {
        let mut back = SioClient::connect_with(f.base(1), Mode::Websocket, auth(Some(offset))).await;
        let (name, arg) = back.next_event().await;
        assert_eq!((name.as_str(), arg), ("session.resync", json!({ "data": {} })), "{offset}");
        let live = ring(&ana, &ben, false).await;
        let (name, arg) = back.next_event().await;
        assert_eq!((name.as_str(), arg["data"]["callId"].as_str()), ("call.started", Some(live.as_str())));
    }
    let mut fresh = SioClient::connect_with(f.base(0), Mode::Websocket, auth(None)).await;
    let live = ring(&ana, &ben, false).await;
    let (name, arg) = fresh.next_event().await;
    assert_eq!(
        (name.as_str(), arg["data"]["callId"].as_str()),
        ("call.started", Some(live.as_str())),
        "no offset: live only"
    );
}

/// An event older than EVENT_HISTORY_TTL is no longer resumable, even while newer events
/// keep the user's history alive.
async fn an_offset_older_than_the_history_ttl_asks_for_a_resync(f: Fixture) {
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let auth = |offset: Option<&str>| Some(json!({ "token": ben.token, "offset": offset }));
    let old = offset_before_leaving(&f, &ana, &ben).await;
    // The history's lifetime is 1 s: let it pass (a deadline, not a wait for something to happen).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ring(&ana, &ben, false).await;
    let mut back = SioClient::connect_with(f.base(1), Mode::Websocket, auth(Some(&old))).await;
    let (name, _) = back.next_event().await;
    assert_eq!(name, "session.resync");
}

on_both_stores!(&[];
    rest_needs_a_token_and_acts_as_its_user,
    a_fresh_connection_hears_what_follows_its_connect,
    sockets_need_a_token,
    each_client_hears_exactly_its_audience,
    a_reconnecting_client_receives_what_it_missed,
    a_replay_racing_live_events_has_no_gap_and_no_duplicate,
    a_connection_that_falls_behind_catches_up_by_itself,
    a_resume_of_a_full_history_completes_by_itself,
    a_server_connection_that_lost_events_gets_a_resync,
);

mod short_history {
    on_both_stores!(&["--event-history", "3"]; an_offset_older_than_the_history_asks_for_a_resync);
    use super::*;
}

mod short_lived_history {
    on_both_stores!(&["--event-history-ttl", "1"]; an_offset_older_than_the_history_ttl_asks_for_a_resync);
    use super::*;
}

/// `AUTH_SECRET` and tokens never reach logs or metrics, even at debug level.
#[tokio::test]
async fn secrets_and_tokens_stay_out_of_logs_and_metrics() {
    let secret = "never-printed-auth-secret-0123456789abcdef";
    let env = [("AUTH", "token"), ("AUTH_SECRET", secret), ("LOG_FORMAT", "json"), ("RUST_LOG", "debug")];
    let (mut replica, api) = crate::support::spawn_binary(&env).await;
    let (_, user) = api.post("/users", json!({ "name": "Ana" })).await;
    let token = user["token"].as_str().expect("token").to_owned();
    let forged = signed(json!({ "sub": user["id"], "exp": now_s() + 60 }), "forged-secret-forged-secret-forged-secret");
    assert_eq!(api.bearer(&token).get("/users").await.0, StatusCode::OK);
    assert_eq!(api.bearer(&forged).get("/users").await.0, StatusCode::UNAUTHORIZED);
    SioClient::connect_with(api.base(), Mode::Upgrade, Some(json!({ "token": token }))).await;
    assert_eq!(SioClient::refused(api.base(), Some(json!({ "token": forged }))).await, "unauthorized");
    let metrics = api.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &replica.id().expect("running").to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(crate::support::WAIT, replica.wait()).await.expect("exits");
    let mut logs = String::new();
    use tokio::io::AsyncReadExt;
    replica.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
    replica.stderr.take().expect("stderr").read_to_string(&mut logs).await.expect("logs");
    assert!(logs.contains("request served"), "debug logs were written:\n{logs}");
    for (what, text) in [("logs", &logs), ("metrics", &metrics)] {
        for needle in [secret, token.as_str(), forged.as_str()] {
            assert!(!text.contains(needle), "a secret or token in the {what}");
        }
    }
}

/// A replica cut off from Redis misses what is published meanwhile on the other replica;
/// once back, it reads them from the event log: its token-mode clients get every addressed
/// event once, in order, with its offset. The gap is certain: the events are published
/// while the cut replica says it is not ready.
#[tokio::test]
async fn clients_of_a_replica_that_missed_events_get_each_once_in_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let cut_off = TestApp::on_url_with_flags(proxy.url(), "gap", &TOKEN_MODE).await;
    let direct = TestApp::with_flags(Some(&redis), "gap", &TOKEN_MODE).await;
    let f = Fixture { apis: vec![cut_off.api.clone(), direct.api.clone()], _apps: vec![cut_off, direct], _redis: None };
    // Ana acts through the direct replica; Ben listens on the one that is cut off.
    let (ana, ben) = (f.person(0, "Ana").await, f.person(1, "Ben").await);
    let mut phone = SioClient::connect_with(f.base(0), Mode::Websocket, Some(json!({ "token": ben.token }))).await;
    let first = ring(&ana, &ben, false).await;
    let (_, heard) = phone.next_event().await;
    assert_eq!(heard["data"]["callId"], first.as_str());

    proxy.cut();
    crate::support::wait_status(f.api(0), "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(ring(&ana, &ben, true).await);
    }
    proxy.restore();
    let mut heard = Vec::new();
    while heard.len() < calls.len() * 2 {
        heard.push(phone.next_event().await);
    }
    assert_eq!(names_and_calls(&heard), started_and_ended(&calls), "every missed event once, in order");
}
