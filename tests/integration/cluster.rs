//! Several replicas on one Redis: every client hears every event exactly once, whichever
//! replica it is on and whichever replica served the request; racing replicas agree.

use crate::support::{Mode, RedisServer, SioClient, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Cluster {
    replicas: Vec<TestApp>,
    clients: Vec<SioClient>,
    _redis: RedisServer,
}

impl Cluster {
    /// Three replicas, with a polling and a websocket client on each.
    async fn start() -> Self {
        let redis = RedisServer::start();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(TestApp::redis(&redis, "cluster").await);
        }
        let mut clients = Vec::new();
        for replica in &replicas {
            clients.push(SioClient::connect(&replica.base, Mode::Polling).await);
            clients.push(SioClient::connect(&replica.base, Mode::Websocket).await);
        }
        Self { replicas, clients, _redis: redis }
    }

    /// What each client heard before a marker event published after everything else.
    async fn heard(&mut self) -> Vec<Vec<(String, Value)>> {
        let marker = format!("marker-{}", uuid::Uuid::new_v4());
        self.replicas[0].api.user(&marker).await;
        let mut all = Vec::new();
        for client in &mut self.clients {
            let is_marker =
                |name: &str, arg: &Value| name == "user.registered" && arg["data"]["name"] == marker.as_str();
            all.push(client.events_until(is_marker).await);
        }
        all
    }
}

#[tokio::test]
async fn every_event_reaches_every_client_once_whichever_replica_served_it() {
    let mut c = Cluster::start().await;
    let (a, b, d) = (c.replicas[0].api.clone(), c.replicas[1].api.clone(), c.replicas[2].api.clone());
    // Each request goes to another replica; they run one after another, so every client
    // hears them in this order, each exactly once, with the values the responses showed.
    let mut expected = Vec::new();
    let (_, ana) = a.post("/users", json!({ "name": "Ana" })).await;
    expected.push(("user.registered", json!({ "id": ana["id"], "name": "Ana" })));
    let (_, ben) = b.post("/users", json!({ "name": "Ben" })).await;
    expected.push(("user.registered", json!({ "id": ben["id"], "name": "Ben" })));
    let (status, call) = d.post("/calls", json!({ "fromUserId": ana["id"], "toUserId": ben["id"] })).await;
    assert_eq!(status, StatusCode::CREATED);
    expected.push((
        "call.started",
        json!({
        "id": call["id"], "callId": call["id"], "fromUserId": ana["id"], "toUserId": ben["id"],
        "status": "initiated", "roomName": call["roomName"], "startTime": call["startTime"] }),
    ));
    a.post(&format!("/calls/{}/end", call["id"].as_str().unwrap_or("")), json!({})).await;
    expected.push(("call.ended", json!({ "callId": call["id"] })));
    let (_, room) = b.post("/rooms", json!({ "name": "Stand-up" })).await;
    expected.push((
        "room.created",
        json!({
        "id": room["id"], "name": "Stand-up", "roomName": room["roomName"], "participants": [] }),
    ));
    d.post(&format!("/rooms/{}/join", room["id"].as_str().unwrap_or("")), json!({ "userId": ana["id"] })).await;
    expected.push(("room.joined", json!({ "roomId": room["id"], "userId": ana["id"] })));

    let expected: Vec<_> = expected.into_iter().map(|(n, d)| (n.to_owned(), json!({ "data": d }))).collect();
    for (i, heard) in c.heard().await.into_iter().enumerate() {
        assert_eq!(heard, expected, "client {i} (replica {})", i / 2);
    }
}

#[tokio::test]
async fn events_from_one_replica_arrive_in_commit_order() {
    let mut c = Cluster::start().await;
    let mut names = Vec::new();
    for i in 0..20 {
        names.push(format!("user-{i}"));
        c.replicas[1].api.user(&names[i]).await;
    }
    for (i, heard) in c.heard().await.into_iter().enumerate() {
        let order: Vec<_> =
            heard.iter().map(|(_, arg)| arg["data"]["name"].as_str().unwrap_or("").to_owned()).collect();
        assert_eq!(order, names, "client {i}");
    }
}

#[tokio::test]
async fn an_upgraded_client_hears_events_once() {
    let redis = RedisServer::start();
    let (a, b) = (TestApp::redis(&redis, "upgrade").await, TestApp::redis(&redis, "upgrade").await);
    let mut client = SioClient::connect(&a.base, Mode::Upgrade).await;
    let id = b.api.user("Ana").await;
    let (name, arg) = client.next_event().await;
    assert_eq!((name.as_str(), &arg), ("user.registered", &json!({ "data": { "id": id, "name": "Ana" } })));
    let marker = b.api.user("marker").await;
    let (_, arg) = client.next_event().await;
    assert_eq!(arg["data"]["id"], marker.as_str(), "no duplicate before the marker");
}

#[tokio::test]
async fn twenty_concurrent_ends_over_three_replicas_emit_one_call_ended() {
    let mut c = Cluster::start().await;
    let (ana, ben) = (c.replicas[0].api.user("Ana").await, c.replicas[1].api.user("Ben").await);
    let (_, call) = c.replicas[2].api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    let id = call["id"].as_str().unwrap_or("").to_owned();
    c.heard().await;

    let ends = (0..20).map(|i| {
        let api = c.replicas[i % 3].api.clone();
        let path = format!("/calls/{id}/end");
        tokio::spawn(async move { api.post(&path, json!({})).await })
    });
    let results = futures::future::join_all(ends).await;
    let mut end_times = Vec::new();
    for result in results {
        let (status, body) = result.expect("request task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ended");
        end_times.push(body["endTime"].clone());
    }
    end_times.dedup();
    assert_eq!(end_times.len(), 1, "every answer shows the one end: {end_times:?}");
    for (i, heard) in c.heard().await.into_iter().enumerate() {
        assert_eq!(heard, vec![("call.ended".to_owned(), json!({ "data": { "callId": id } }))], "client {i}");
    }
}

#[tokio::test]
async fn concurrent_joins_of_one_user_list_them_once() {
    let mut c = Cluster::start().await;
    let ana = c.replicas[0].api.user("Ana").await;
    let (_, room) = c.replicas[1].api.post("/rooms", json!({ "name": "R" })).await;
    let path = format!("/rooms/{}/join", room["id"].as_str().unwrap_or(""));
    let joins = (0..12).map(|i| {
        let (api, path, ana) = (c.replicas[i % 3].api.clone(), path.clone(), ana.clone());
        tokio::spawn(async move { api.post(&path, json!({ "userId": ana })).await })
    });
    for result in futures::future::join_all(joins).await {
        let (status, body) = result.expect("request task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["room"]["participants"], json!([ana]));
    }
    let heard = c.heard().await;
    let joined = heard[0].iter().filter(|(name, _)| name == "room.joined").count();
    assert_eq!(joined, 12, "every join is announced");
}
