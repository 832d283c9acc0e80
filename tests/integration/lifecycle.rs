//! The call lifecycle (sections 6 and 7 of the contract): accept, decline, cancel, missed,
//! expired, LiveKit webhooks, and the races between them, on the embedded store and on two
//! replicas sharing a Redis (requests alternate between them; a client on each listens).

use crate::support::{
    API_KEY, API_SECRET, Api, Mode, RedisServer, SioClient, TestApp, assert_problem, id, sign_webhook as sign,
    spawn_binary, until_ended,
};
use livekit_api::access_token::TokenVerifier;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

enum Backend {
    Memory,
    /// Two replicas on one Redis.
    Redis,
}

/// Replicas with a listening client each.
struct Fixture {
    apis: Vec<Api>,
    clients: Vec<SioClient>,
    _apps: Vec<TestApp>,
    _redis: Option<RedisServer>,
}

impl Fixture {
    async fn new(backend: Backend, flags: &[&str]) -> Self {
        let (apps, redis) = crate::support::replicas(matches!(backend, Backend::Redis), "lifecycle", flags).await;
        let mut clients = Vec::new();
        for app in &apps {
            clients.push(SioClient::connect(&app.base, Mode::Websocket).await);
        }
        Self { apis: apps.iter().map(|a| a.api.clone()).collect(), clients, _apps: apps, _redis: redis }
    }

    /// The replica that serves request `n` (they alternate).
    fn api(&self, n: usize) -> &Api {
        &self.apis[n % self.apis.len()]
    }

    /// Every event heard since the last call, the same on every replica's client.
    async fn heard(&mut self) -> Vec<(String, Value)> {
        crate::support::heard_alike(&self.apis[0], &mut self.clients).await
    }

    /// Registers a caller and a callee and starts a call; returns (call, caller, callee).
    async fn ringing(&mut self) -> (Value, String, String) {
        let (ana, ben) = (self.api(0).user("Ana").await, self.api(1).user("Ben").await);
        let (status, call) = self.api(0).post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
        assert_eq!(status, StatusCode::CREATED, "{call}");
        self.heard().await;
        (call, ana, ben)
    }
}

fn ended(call_id: &str) -> (String, Value) {
    ("call.ended".into(), json!({ "data": { "callId": call_id } }))
}

pub fn webhook_body(kind: &str, event_id: &str, room: &Value, identity: Option<&str>) -> String {
    let mut event = json!({ "event": kind, "id": event_id, "createdAt": "1795809271",
                            "room": { "sid": "RM_test", "name": room } });
    if let Some(identity) = identity {
        event["participant"] = json!({ "sid": "PA_test", "identity": identity });
    }
    event.to_string()
}

pub async fn post_webhook(api: &Api, body: &str, authorization: Option<String>) -> (StatusCode, Value) {
    let mut req = api.raw(Method::POST, "/livekit/webhook").header("content-type", "application/webhook+json");
    if let Some(auth) = authorization {
        req = req.header("authorization", auth);
    }
    let res = req.body(body.to_owned()).send().await.expect("sent");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn accepting_then_ending_completes_the_call(mut f: Fixture) {
    let (call, ana, ben) = f.ringing().await;
    let path = format!("/calls/{}", id(&call));
    let (status, accepted) = f.api(1).post(&format!("{path}/accept"), json!({ "userId": ben })).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!((accepted["status"].as_str(), accepted["endTime"].is_null()), (Some("accepted"), true));
    assert!(accepted["answerTime"].as_str() >= call["startTime"].as_str());
    let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(accepted["token"].as_str().unwrap_or(""));
    let claims = claims.expect("the callee's LiveKit token");
    assert_eq!(
        (claims.sub.as_str(), claims.video.room.as_str()),
        (ben.as_str(), call["roomName"].as_str().unwrap_or(""))
    );
    assert_eq!(accepted["url"], "wss://livekit.test");
    let answered = json!({ "data": { "callId": id(&call), "userId": ben, "answerTime": accepted["answerTime"] } });
    assert_eq!(f.heard().await, vec![("call.accepted".to_owned(), answered)]);

    let (status, again) = f.api(0).post(&format!("{path}/accept"), json!({ "userId": ben })).await;
    assert_eq!(status, StatusCode::OK, "accepting twice is idempotent");
    assert_eq!((&again["status"], &again["answerTime"]), (&accepted["status"], &accepted["answerTime"]));
    for (status, expected) in [("accepted", true), ("initiated", false), ("ended", false)] {
        let (_, list) = f.api(0).get(&format!("/calls?userId={ben}&status={status}")).await;
        let ids: Vec<_> = list.as_array().into_iter().flatten().map(|c| c["id"].clone()).collect();
        assert_eq!(ids.contains(&call["id"]), expected, "?status={status}: {list}");
    }
    assert!(f.heard().await.is_empty(), "a repeated accept announces nothing");

    let (status, done) = f.api(1).post(&format!("{path}/end"), json!({ "userId": ana })).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["status"].as_str(), done["endReason"].as_str()), (Some("ended"), Some("completed")));
    assert_eq!((done["endedBy"].as_str(), &done["answerTime"]), (Some(ana.as_str()), &accepted["answerTime"]));
    assert_eq!(f.heard().await, vec![ended(id(&call))]);
    assert_eq!(f.api(0).get(&path).await.1, done);
}

async fn declining_ends_the_call_with_its_reason(mut f: Fixture) {
    for (reason, body_reason) in [("declined", None), ("busy", Some("busy")), ("declined", Some("declined"))] {
        let (call, _, ben) = f.ringing().await;
        let mut body = json!({ "userId": ben });
        if let Some(r) = body_reason {
            body["reason"] = json!(r);
        }
        let path = format!("/calls/{}/decline", id(&call));
        let (status, declined) = f.api(1).post(&path, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{declined}");
        assert_eq!((declined["status"].as_str(), declined["endReason"].as_str()), (Some("ended"), Some(reason)));
        assert_eq!((declined["endedBy"].as_str(), &declined["answerTime"]), (Some(ben.as_str()), &Value::Null));
        let said = json!({ "data": { "callId": id(&call), "userId": ben, "reason": reason } });
        assert_eq!(f.heard().await, vec![("call.declined".to_owned(), said), ended(id(&call))]);
        let (status, again) = f.api(0).post(&path, body).await;
        assert_eq!((status, again), (StatusCode::OK, declined), "declining an ended call returns it as it is");
        assert!(f.heard().await.is_empty());
    }
}

async fn ending_a_ringing_call_cancels_it(mut f: Fixture) {
    let (call, ana, _) = f.ringing().await;
    let (status, done) = f.api(1).post(&format!("/calls/{}/end", id(&call)), json!({ "userId": ana })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((done["endReason"].as_str(), done["endedBy"].as_str()), (Some("cancelled"), Some(ana.as_str())));
    assert_eq!(f.heard().await, vec![ended(id(&call))]);

    let (call, _, _) = f.ringing().await;
    let res = f.api(0).raw(Method::POST, &format!("/calls/{}/end", id(&call))).send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::OK, "no body at all is v1's form");
    let done: Value = res.json().await.expect("json");
    assert_eq!((done["endReason"].as_str(), &done["endedBy"]), (Some("cancelled"), &Value::Null));
    assert_eq!(f.heard().await, vec![ended(id(&call))]);
}

async fn lifecycle_errors_change_nothing(mut f: Fixture) {
    let (call, ana, ben) = f.ringing().await;
    let eve = f.api(0).user("Eve").await;
    f.heard().await;
    let path = format!("/calls/{}", id(&call));
    let cases = [
        ("accept", json!({ "userId": ana }), 403, "not_the_callee"),
        ("accept", json!({ "userId": eve }), 403, "not_the_callee"),
        ("decline", json!({ "userId": ana }), 403, "not_the_callee"),
        ("decline", json!({ "userId": ben, "reason": "maybe" }), 422, "validation_failed"),
        ("decline", json!({ "userId": ben, "reason": 7 }), 422, "validation_failed"),
        ("decline", json!({}), 422, "validation_failed"),
        ("accept", json!({ "userId": "not-a-uuid" }), 422, "validation_failed"),
        ("end", json!({ "userId": eve }), 403, "not_a_participant"),
        ("end", json!({ "userId": "nobody" }), 422, "validation_failed"),
    ];
    for (n, (action, body, status, code)) in cases.into_iter().enumerate() {
        let (got, problem) = f.api(n).post(&format!("{path}/{action}"), body.clone()).await;
        assert_problem(got, &problem, status, code);
        if code == "validation_failed" {
            assert!(problem["errors"].as_array().is_some_and(|e| !e.is_empty()), "{problem}");
        }
    }
    let ghost = uuid::Uuid::new_v4();
    for action in ["accept", "decline", "end"] {
        let (got, problem) = f.api(0).post(&format!("/calls/{ghost}/{action}"), json!({ "userId": ben })).await;
        assert_problem(got, &problem, 404, "call_not_found");
        let (got, problem) = f.api(1).post(&format!("/calls/nope/{action}"), json!({ "userId": ben })).await;
        assert_problem(got, &problem, 404, "call_not_found");
    }
    let (_, unchanged) = f.api(1).get(&path).await;
    assert_eq!(unchanged["status"], "initiated");
    assert!(f.heard().await.is_empty(), "refused requests announce nothing");
    let (got, problem) = f.api(0).get("/calls?status=ringing").await;
    assert_problem(got, &problem, 422, "validation_failed");

    f.api(0).post(&format!("{path}/accept"), json!({ "userId": ben })).await;
    let (got, problem) = f.api(1).post(&format!("{path}/decline"), json!({ "userId": ben })).await;
    assert_problem(got, &problem, 409, "call_already_accepted");
    f.api(0).post(&format!("{path}/end"), json!({})).await;
    let (got, problem) = f.api(1).post(&format!("{path}/accept"), json!({ "userId": ben })).await;
    assert_problem(got, &problem, 409, "call_ended");
    let (got, problem) = f.api(0).post(&format!("{path}/accept"), json!({ "userId": eve })).await;
    assert_problem(got, &problem, 403, "not_the_callee");
    let names: Vec<_> = f.heard().await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["call.accepted", "call.ended"]);
}

/// Every transition raced from both replicas at once: one winner, its events once.
async fn racing_transitions_have_one_winner(mut f: Fixture) {
    const CALLS: usize = 12;
    let mut calls = Vec::new();
    for _ in 0..CALLS {
        calls.push(f.ringing().await);
    }
    let mut races = Vec::new();
    for (n, (call, ana, ben)) in calls.iter().enumerate() {
        let path = format!("/calls/{}", id(call));
        let (first, second) = match n % 3 {
            0 => (("accept", json!({ "userId": ben })), ("accept", json!({ "userId": ben }))),
            1 => (("accept", json!({ "userId": ben })), ("decline", json!({ "userId": ben }))),
            _ => (("end", json!({ "userId": ana })), ("decline", json!({ "userId": ben, "reason": "busy" }))),
        };
        let (a, b) = (f.api(0).clone(), f.api(1).clone());
        let (p1, p2) = (format!("{path}/{}", first.0), format!("{path}/{}", second.0));
        races.push(tokio::spawn(async move {
            let (x, y) = tokio::join!(a.post(&p1, first.1), b.post(&p2, second.1));
            (x.0, y.0)
        }));
    }
    let mut outcomes = Vec::new();
    for race in races {
        outcomes.push(race.await.expect("race"));
    }
    let heard = f.heard().await;
    for (n, ((call, _, _), statuses)) in calls.iter().zip(outcomes).enumerate() {
        let (_, now) = f.api(n).get(&format!("/calls/{}", id(call))).await;
        let mine: Vec<_> =
            heard.iter().filter(|(_, a)| a["data"]["callId"] == call["id"]).map(|(name, _)| name.as_str()).collect();
        match n % 3 {
            0 => {
                assert_eq!(statuses, (StatusCode::OK, StatusCode::OK));
                assert_eq!((now["status"].as_str(), mine), (Some("accepted"), vec!["call.accepted"]));
            }
            1 if now["status"] == "accepted" => {
                assert_eq!(statuses, (StatusCode::OK, StatusCode::CONFLICT), "{now}");
                assert_eq!(mine, vec!["call.accepted"]);
            }
            1 => {
                assert_eq!(statuses, (StatusCode::CONFLICT, StatusCode::OK), "{now}");
                assert_eq!(mine, vec!["call.declined", "call.ended"]);
            }
            _ => {
                assert_eq!(statuses, (StatusCode::OK, StatusCode::OK), "an ended call is returned as it is");
                let expected =
                    if now["endReason"] == "busy" { vec!["call.declined", "call.ended"] } else { vec!["call.ended"] };
                assert!(["busy", "cancelled"].contains(&now["endReason"].as_str().unwrap_or("")), "{now}");
                assert_eq!(mine, expected);
            }
        }
    }
}

async fn the_callees_token_request_accepts_a_ringing_call(mut f: Fixture) {
    let (call, ana, ben) = f.ringing().await;
    let token = |user: &str| json!({ "roomName": call["roomName"], "userId": user });
    let (status, _) = f.api(0).post("/livekit/token", token(&ana)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(f.heard().await.is_empty(), "the caller asking for a token changes nothing");
    let (status, _) = f.api(1).post("/livekit/token", token(&ben)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, now) = f.api(0).get(&format!("/calls/{}", id(&call))).await;
    assert_eq!(now["status"], "accepted");
    let answered = json!({ "data": { "callId": id(&call), "userId": ben, "answerTime": now["answerTime"] } });
    assert_eq!(f.heard().await, vec![("call.accepted".to_owned(), answered)]);
    let (status, _) = f.api(0).post("/livekit/token", token(&ben)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(f.heard().await.is_empty(), "asking again changes nothing");
}

async fn webhooks_answer_and_finish_calls_once(mut f: Fixture) {
    let (call, ana, ben) = f.ringing().await;
    let room = &call["roomName"];
    let joined = webhook_body("participant_joined", "EV_caller", room, Some(&ana));
    let (status, receipt) = post_webhook(f.api(0), &joined, Some(sign(&joined, API_SECRET))).await;
    assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some("ignored")), "the caller joining");

    let joined = webhook_body("participant_joined", "EV_callee", room, Some(&ben));
    let forged = [None, Some(sign(&joined, "another-secret-of-the-same-length")), Some(sign("{}", API_SECRET))];
    for authorization in forged {
        let (status, problem) = post_webhook(f.api(1), &joined, authorization).await;
        assert_problem(status, &problem, 401, "invalid_signature");
    }
    assert!(f.heard().await.is_empty(), "unverified webhooks change nothing");

    for (n, expected) in ["applied", "duplicate", "duplicate"].into_iter().enumerate() {
        let (status, receipt) = post_webhook(f.api(n), &joined, Some(sign(&joined, API_SECRET))).await;
        assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some(expected)));
    }
    let (_, now) = f.api(0).get(&format!("/calls/{}", id(&call))).await;
    assert_eq!(now["status"], "accepted");
    let answered = json!({ "data": { "callId": id(&call), "userId": ben, "answerTime": now["answerTime"] } });
    assert_eq!(f.heard().await, vec![("call.accepted".to_owned(), answered)]);

    let finished = webhook_body("room_finished", "EV_finished", room, None);
    let (status, receipt) = post_webhook(f.api(1), &finished, Some(sign(&finished, API_SECRET))).await;
    assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some("applied")));
    let (_, done) = f.api(0).get(&format!("/calls/{}", id(&call))).await;
    assert_eq!((done["endReason"].as_str(), &done["endedBy"]), (Some("completed"), &Value::Null));
    let (status, receipt) = post_webhook(f.api(0), &finished, Some(sign(&finished, API_SECRET))).await;
    assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some("duplicate")));
    assert_eq!(f.heard().await, vec![ended(id(&call))]);

    let (ringing, _, _) = f.ringing().await;
    let finished = webhook_body("room_finished", "EV_ringing", &ringing["roomName"], None);
    post_webhook(f.api(0), &finished, Some(sign(&finished, API_SECRET))).await;
    let (_, cancelled) = f.api(1).get(&format!("/calls/{}", id(&ringing))).await;
    assert_eq!((cancelled["endReason"].as_str(), &cancelled["endedBy"]), (Some("cancelled"), &Value::Null));
    assert_eq!(f.heard().await, vec![ended(id(&ringing))]);

    let elsewhere = webhook_body("room_finished", "EV_other", &json!(uuid::Uuid::new_v4()), None);
    let (status, receipt) = post_webhook(f.api(1), &elsewhere, Some(sign(&elsewhere, API_SECRET))).await;
    assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some("ignored")), "a room that is not ours");
    let other_kind = webhook_body("track_published", "EV_track", room, Some(&ben));
    let (status, receipt) = post_webhook(f.api(0), &other_kind, Some(sign(&other_kind, API_SECRET))).await;
    assert_eq!((status, receipt["outcome"].as_str()), (StatusCode::OK, Some("ignored")));
    assert!(f.heard().await.is_empty());
    assert!(
        f.api(0)
            .metric("switchboard_livekit_webhooks_total{type=\"participant_joined\",outcome=\"duplicate\"}")
            .await
            .is_some()
    );
}

/// An end racing the room's `room_finished`: one `call.ended`.
async fn an_end_racing_a_webhook_ends_the_call_once(mut f: Fixture) {
    let mut calls = Vec::new();
    for _ in 0..8 {
        calls.push(f.ringing().await.0);
    }
    let mut races = Vec::new();
    for (n, call) in calls.iter().enumerate() {
        let finished = webhook_body("room_finished", &format!("EV_race_{n}"), &call["roomName"], None);
        let (a, b) = (f.api(n).clone(), f.api(n + 1).clone());
        let path = format!("/calls/{}/end", id(call));
        races.push(tokio::spawn(async move {
            let signature = Some(sign(&finished, API_SECRET));
            tokio::join!(a.post(&path, json!({})), post_webhook(&b, &finished, signature))
        }));
    }
    for race in races {
        let ((ended_status, _), (hook_status, _)) = race.await.expect("race");
        assert_eq!((ended_status, hook_status), (StatusCode::OK, StatusCode::OK));
    }
    let heard = f.heard().await;
    for call in &calls {
        let mine: Vec<_> = heard.iter().filter(|(_, a)| a["data"]["callId"] == call["id"]).collect();
        assert_eq!(mine, vec![&ended(id(call))]);
    }
}

async fn unanswered_calls_are_missed_and_long_calls_expire(mut f: Fixture) {
    let (ana, ben) = (f.api(0).user("Ana").await, f.api(1).user("Ben").await);
    let start = || f.api(0).post("/calls", json!({ "fromUserId": ana, "toUserId": ben }));
    let ((_, missed), (_, expiring)) = (start().await, start().await);
    let (status, _) = f.api(1).post(&format!("/calls/{}/accept", id(&expiring)), json!({ "userId": ben })).await;
    assert_eq!(status, StatusCode::OK);
    let ids = vec![id(&missed).to_owned(), id(&expiring).to_owned()];
    for client in &mut f.clients {
        let heard = until_ended(client, &ids).await;
        assert_eq!(heard[&ids[0]], vec!["call.started", "call.missed", "call.ended"]);
        assert_eq!(heard[&ids[1]], vec!["call.started", "call.accepted", "call.ended"]);
    }
    let ms =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or("")).expect("time").timestamp_millis();
    let (_, call) = f.api(0).get(&format!("/calls/{}", ids[0])).await;
    assert_eq!((call["endReason"].as_str(), &call["endedBy"]), (Some("missed"), &Value::Null));
    assert!(ms(&call["endTime"]) - ms(&call["startTime"]) >= 2000, "missed at its deadline, not before: {call}");
    let (_, call) = f.api(1).get(&format!("/calls/{}", ids[1])).await;
    assert_eq!((call["endReason"].as_str(), &call["endedBy"]), (Some("expired"), &Value::Null));
    assert!(ms(&call["endTime"]) - ms(&call["answerTime"]) >= 2000, "{call}");
}

on_both_stores!(&[];
    accepting_then_ending_completes_the_call,
    declining_ends_the_call_with_its_reason,
    ending_a_ringing_call_cancels_it,
    lifecycle_errors_change_nothing,
    racing_transitions_have_one_winner,
    the_callees_token_request_accepts_a_ringing_call,
    webhooks_answer_and_finish_calls_once,
    an_end_racing_a_webhook_ends_the_call_once,
);

mod timers {
    on_both_stores!(&["--call-ring-timeout", "2", "--call-max-duration", "2"];
        unanswered_calls_are_missed_and_long_calls_expire,
    );
    use super::*;
}

fn replica_env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![("REDIS_URL", redis.url()), ("REDIS_NAMESPACE", "timers".into()), ("CALL_RING_TIMEOUT", "2".into())]
}

async fn replica(env: &[(&'static str, String)]) -> (tokio::process::Child, Api) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_binary(&env).await
}

/// The replica that started a call is killed at once; the others still miss it on time,
/// once.
#[tokio::test]
async fn a_killed_replica_loses_no_ring_timeout() {
    let redis = RedisServer::start();
    let env = replica_env(&redis);
    let (mut doomed, a) = replica(&env).await;
    let (_b, b) = replica(&env).await;
    let (_c, c) = replica(&env).await;
    let mut listeners = vec![SioClient::connect(b.base(), Mode::Websocket).await];
    listeners.push(SioClient::connect(c.base(), Mode::Polling).await);
    let (ana, ben) = (b.user("Ana").await, c.user("Ben").await);
    let (status, call) = a.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    assert_eq!(status, StatusCode::CREATED);
    doomed.start_kill().expect("SIGKILL");
    let ids = vec![id(&call).to_owned()];
    for listener in &mut listeners {
        let heard = until_ended(listener, &ids).await;
        assert_eq!(heard[&ids[0]], vec!["call.started", "call.missed", "call.ended"]);
    }
    let (_, stored) = b.get(&format!("/calls/{}", ids[0])).await;
    assert_eq!(stored["endReason"], "missed");
}

/// Every replica stops while a call rings; a fresh one fires the deadline.
#[tokio::test]
async fn ring_timeouts_survive_a_restart_of_every_replica() {
    let redis = RedisServer::start();
    let env = replica_env(&redis);
    let (mut first, a) = replica(&env).await;
    let (mut second, b) = replica(&env).await;
    let (ana, ben) = (a.user("Ana").await, b.user("Ben").await);
    let (_, call) = b.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    first.start_kill().expect("kill");
    second.start_kill().expect("kill");
    let _ = (first.wait().await, second.wait().await);
    let (_fresh, c) = replica(&env).await;
    let mut listener = SioClient::connect(c.base(), Mode::Websocket).await;
    let ids = vec![id(&call).to_owned()];
    let (_, now) = c.get(&format!("/calls/{}", ids[0])).await;
    if now["status"] == "initiated" {
        assert_eq!(until_ended(&mut listener, &ids).await[&ids[0]], vec!["call.missed", "call.ended"]);
    }
    let (_, stored) = c.get(&format!("/calls/{}", ids[0])).await;
    assert_eq!((stored["endReason"].as_str(), &stored["endedBy"]), (Some("missed"), &Value::Null));
}

/// Three replicas poll the same deadlines: each call is missed once.
#[tokio::test]
async fn three_replicas_racing_for_deadlines_fire_each_once() {
    const CALLS: usize = 30;
    let redis = RedisServer::start();
    let env = replica_env(&redis);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&env).await);
    }
    let mut listeners = Vec::new();
    for (_, api) in &replicas {
        listeners.push(SioClient::connect(api.base(), Mode::Websocket).await);
    }
    let (ana, ben) = (replicas[0].1.user("Ana").await, replicas[1].1.user("Ben").await);
    let mut ids = Vec::new();
    for n in 0..CALLS {
        let (_, call) = replicas[n % 3].1.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
        ids.push(id(&call).to_owned());
    }
    for listener in &mut listeners {
        let heard = until_ended(listener, &ids).await;
        for call in &ids {
            assert_eq!(heard[call], vec!["call.started", "call.missed", "call.ended"], "{call}");
        }
    }
    let mut fired = 0.0;
    for (_, api) in &replicas {
        fired += api.metric("switchboard_call_timers_fired_total{kind=\"missed\"}").await.unwrap_or(0.0);
    }
    assert_eq!(fired, CALLS as f64, "every deadline fired on exactly one replica");
}
