//! A change and its event are one step: requests cancelled at every point a client can
//! cut them, and a replica killed under load, leave every stored change with exactly one
//! event heard by a client, and no event without its stored change.

use crate::support::{Api, Mode, RedisServer, SioClient, TestApp, eventually, spawn_binary};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// How many requests of each kind the victim replica receives, and how many of them are
/// not cut short (so that every kind of change is exercised).
const PER_KIND: usize = 40;
const WHOLE: usize = 3;

#[tokio::test]
async fn cancelled_requests_and_a_killed_replica_leave_each_change_with_exactly_one_event() {
    let redis = RedisServer::start();
    let observer = TestApp::redis(&redis, "atomic").await;
    let mut listener = SioClient::connect(&observer.base, Mode::Websocket).await;
    let api = &observer.api;

    // What the chaos acts on: callers, calls to end, a room and users to join it.
    let (ana, ben) = (api.user("Ana").await, api.user("Ben").await);
    let mut calls = Vec::new();
    for _ in 0..PER_KIND {
        let (status, call) = api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
        assert_eq!(status, StatusCode::CREATED);
        calls.push(call["id"].as_str().unwrap_or_default().to_owned());
    }
    let (_, room) = api.post("/rooms", json!({ "name": "Chaos" })).await;
    let room = room["id"].as_str().unwrap_or_default().to_owned();
    let mut joiners = Vec::new();
    for i in 0..PER_KIND {
        joiners.push(api.user(&format!("joiner-{i}")).await);
    }
    drain_until_marker(&mut listener, api).await;
    let baseline_clients = redis_clients(redis.port);

    let namespace = [("REDIS_URL", redis.url()), ("REDIS_NAMESPACE", "atomic".to_owned())];
    let env: Vec<(&str, &str)> = namespace.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut victim, victim_api) = spawn_binary(&env).await;

    // The first requests of each kind run to completion; the others start one after
    // another and are each cut after their own delay, from before they are sent to after
    // they are answered, so the server sees disconnects at every await point of the
    // handlers; the replica is killed while they fly.
    let (mut whole, mut cut) = (Vec::new(), Vec::new());
    for i in 0..PER_KIND {
        let bodies = [
            ("/users".to_owned(), json!({ "name": format!("chaos-user-{i}") })),
            ("/rooms".to_owned(), json!({ "name": format!("chaos-room-{i}") })),
            ("/calls".to_owned(), json!({ "fromUserId": ben, "toUserId": ana })),
            (format!("/calls/{}/end", calls[i]), json!({})),
            (format!("/rooms/{room}/join"), json!({ "userId": joiners[i] })),
        ];
        for (k, (path, body)) in bodies.into_iter().enumerate() {
            let api = victim_api.clone();
            if i < WHOLE {
                whole.push(tokio::spawn(async move { api.post(&path, body).await.0 }));
            } else {
                let start = Duration::from_millis(3 * i as u64);
                let after = Duration::from_micros(((i * 5 + k) * 997 % 100_000) as u64);
                cut.push(tokio::spawn(cut_short(api, path, body, start, after)));
            }
        }
    }
    for request in whole {
        assert!(request.await.expect("request task").is_success(), "an uncut request failed");
    }
    victim.start_kill().expect("SIGKILL");
    let _ = victim.wait().await;
    for request in cut {
        let _ = request.await;
    }
    // Redis has closed the dead replica's connections, so it has run every script it got.
    eventually("Redis to drop the killed replica's connections", || async {
        redis_clients(redis.port) <= baseline_clients
    })
    .await;

    let heard = drain_until_marker(&mut listener, api).await;
    let mut count: HashMap<(String, String), usize> = HashMap::new();
    for (name, arg) in &heard {
        let data = &arg["data"];
        let key = match name.as_str() {
            "call.ended" => data["callId"].clone(),
            "room.joined" => json!(format!("{}/{}", text(&data["roomId"]), text(&data["userId"]))),
            _ => data["id"].clone(),
        };
        *count.entry((name.clone(), key.as_str().unwrap_or_default().to_owned())).or_default() += 1;
    }
    let mut expected: HashMap<(String, String), usize> = HashMap::new();
    let mut expect = |name: &str, key: String| *expected.entry((name.to_owned(), key)).or_default() += 1;
    for user in list(api, "/users").await {
        if user["name"].as_str().is_some_and(|n| n.starts_with("chaos-user-")) {
            expect("user.registered", id(&user));
        }
    }
    for r in list(api, "/rooms").await {
        if r["name"].as_str().is_some_and(|n| n.starts_with("chaos-room-")) {
            expect("room.created", id(&r));
        }
        if id(&r) == room {
            for user in r["participants"].as_array().into_iter().flatten() {
                expect("room.joined", format!("{room}/{}", text(user)));
            }
        }
    }
    for call in list(api, "/calls").await {
        if call["fromUserId"] == ben.as_str() {
            expect("call.started", id(&call));
        }
        if call["status"] == "ended" {
            expect("call.ended", id(&call));
        }
    }
    assert_eq!(count, expected, "events heard (left) differ from the changes stored (right)");
}

/// Sends one request after `start` and drops it `after` that, whatever stage it reached.
async fn cut_short(api: Api, path: String, body: Value, start: Duration, after: Duration) {
    tokio::time::sleep(start).await;
    let send = api.raw(reqwest::Method::POST, &path).json(&body).send();
    let _ = tokio::time::timeout(after, send).await;
}

/// Every event heard up to a marker user registered now, then the marker is consumed.
async fn drain_until_marker(listener: &mut SioClient, api: &Api) -> Vec<(String, Value)> {
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    api.user(&marker).await;
    listener.events_until(|name, arg| name == "user.registered" && arg["data"]["name"] == marker.as_str()).await
}

async fn list(api: &Api, path: &str) -> Vec<Value> {
    let (status, items) = api.get(&format!("{path}?limit=1000")).await;
    assert_eq!(status, StatusCode::OK);
    items.as_array().cloned().unwrap_or_default()
}

fn id(v: &Value) -> String {
    text(&v["id"]).to_owned()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// How many connections the Redis server holds now.
fn redis_clients(port: u16) -> usize {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "client", "list"])
        .output()
        .expect("redis-cli must be installed (Debian's redis-tools)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}
