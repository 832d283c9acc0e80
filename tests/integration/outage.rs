//! Redis goes away under running replicas: requests fail fast with 503 and change
//! nothing, readiness drops, and everything recovers without a restart.

use crate::support::{Mode, RedisServer, SioClient, TestApp, wait_status};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_redis_outage_is_503_and_replicas_recover_by_themselves() {
    let mut redis = RedisServer::start();
    let replicas = [TestApp::redis(&redis, "outage").await, TestApp::redis(&redis, "outage").await];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(SioClient::connect(&replica.base, Mode::Websocket).await);
    }

    redis.kill();
    for replica in &replicas {
        wait_status(&replica.api, "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
        // Answered (within the client's bound), not left hanging.
        let (status, body) = replica.api.post("/users", json!({ "name": "during" })).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "store_unavailable");
        let (status, _) = replica.api.get("/users").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    redis.restart();
    for replica in &replicas {
        wait_status(&replica.api, "/readyz", StatusCode::OK).await;
    }
    // Both replicas write and relay again; the refused writes left nothing behind.
    for (i, replica) in replicas.iter().enumerate() {
        let name = format!("after-{i}");
        let id = replica.api.user(&name).await;
        for client in &mut clients {
            let (event, arg) = client.next_event().await;
            assert_eq!(event, "user.registered");
            assert_eq!(arg["data"], json!({ "id": id, "name": name }), "the first event after the outage");
        }
    }
    let (_, users) = replicas[0].api.get("/users").await;
    let names: Vec<_> = users.as_array().into_iter().flatten().map(|u| u["name"].clone()).collect();
    assert_eq!(names, vec![json!("after-0"), json!("after-1")]);
}

#[tokio::test]
async fn a_write_confirmed_too_late_is_answered_as_unknown_and_still_announced() {
    let redis = RedisServer::start();
    let replica = TestApp::redis(&redis, "late").await;
    let mut client = SioClient::connect(&replica.base, Mode::Websocket).await;

    // The script is loaded, as it is on any Redis that has served a while.
    replica.api.user("before").await;
    assert_eq!(client.next_event().await.1["data"]["name"], "before");

    // A stalled Redis takes the write but answers after REDIS_TIMEOUT_MS: the replica
    // cannot know whether it was made, and says so instead of "nothing was changed".
    redis.freeze(true);
    let api = replica.api.clone();
    let late = tokio::spawn(async move {
        let response = api.raw(reqwest::Method::POST, "/users").json(&json!({ "name": "late" })).send().await;
        let response = response.expect("answered");
        let retry_after = response.headers().get("retry-after").cloned();
        (response.status(), retry_after, response.json::<serde_json::Value>().await.expect("problem"))
    });
    let (status, retry_after, body) = late.await.expect("request task");
    redis.freeze(false);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "outcome_unknown");
    assert_eq!(retry_after.expect("Retry-After"), "1");

    // It was made after all, and its event came with it, exactly once.
    let (event, arg) = client.next_event().await;
    assert_eq!(event, "user.registered");
    assert_eq!(arg["data"]["name"], "late");
    let (_, users) = replica.api.get("/users").await;
    let names: Vec<_> = users.as_array().into_iter().flatten().map(|u| u["name"].clone()).collect();
    assert_eq!(names, vec![json!("before"), json!("late")]);
}
