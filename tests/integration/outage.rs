//! Redis goes away under running replicas: requests fail fast with 503 and change
//! nothing, readiness drops, and everything recovers without a restart.

use crate::support::{Mode, RedisServer, SioClient, TestApp, wait_status};
use reqwest::StatusCode;
use serde_json::json;

/// Redis keeps its data across the outage (an append-only file written before each answer),
/// so what is there afterwards is exactly what was acknowledged: a refused write that were
/// queued and replayed on reconnection would show.
#[tokio::test]
async fn a_redis_outage_is_503_and_replicas_recover_by_themselves() {
    let mut redis = RedisServer::start_durable();
    let replicas = [TestApp::redis(&redis, "outage").await, TestApp::redis(&redis, "outage").await];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(SioClient::connect(&replica.base, Mode::Websocket).await);
    }
    replicas[0].api.user("before").await;
    for client in &mut clients {
        assert_eq!(client.next_event().await.1["data"]["name"], "before");
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
    assert_eq!(names, vec![json!("before"), json!("after-0"), json!("after-1")], "kept, and nothing refused");
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

/// A replica started against a Redis that is up connects before it does anything else:
/// nothing fails, nothing is missed, so it logs no warning and counts no Redis error (a
/// replica's start is when clients move to it during a rolling restart).
#[tokio::test]
async fn a_clean_start_logs_no_warning_and_counts_no_redis_error() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("LOG_FORMAT", "json"),
        ("LIVEKIT_API_KEY", crate::support::API_KEY),
        ("LIVEKIT_API_SECRET", crate::support::API_SECRET),
        ("MAX_CONNECTIONS", "1000"),
    ];
    let (mut replica, api) = crate::support::spawn_binary(&env).await;
    let mut client = SioClient::connect(api.base(), Mode::Websocket).await;
    let id = api.user("Ana").await;
    assert_eq!(client.next_event().await.1["data"]["id"], id.as_str());
    // Past the first ticks of the call timers (twice a second) and the gauges (every second).
    crate::support::eventually("the Redis gauges to report both clients connected", || async {
        api.metric("switchboard_redis_connected{client=\"data\"}").await == Some(1.0)
            && api.metric("switchboard_redis_connected{client=\"subscriber\"}").await == Some(1.0)
    })
    .await;
    let scrape = api.raw(reqwest::Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    let errors: Vec<_> =
        scrape.lines().filter(|l| l.starts_with("switchboard_redis_errors_total") && !l.ends_with(" 0")).collect();
    assert!(errors.is_empty(), "Redis errors counted: {errors:?}");

    let pid = replica.id().expect("running").to_string();
    let _ = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await;
    let _ = tokio::time::timeout(crate::support::WAIT, replica.wait()).await.expect("exits");
    let mut logs = String::new();
    use tokio::io::AsyncReadExt;
    replica.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
    replica.stderr.take().expect("stderr").read_to_string(&mut logs).await.expect("logs");
    let warnings: Vec<_> =
        logs.lines().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).collect();
    assert!(warnings.is_empty(), "a clean start warned:\n{}", warnings.join("\n"));
}
