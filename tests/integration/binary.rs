//! The built `switchboard` binary as operators run it.

use crate::support::{Mode, SioClient, WAIT, spawn_binary};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test]
async fn help_lists_every_setting_of_the_contract() {
    let out = Command::new(BIN).arg("--help").output().await.expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--host",
        "--redis-url",
        "--livekit-url",
        "--livekit-api-key",
        "--livekit-api-secret",
        "--livekit-token-ttl",
        "--cors-origins",
        "PORT",
        "REDIS_URL",
        "LIVEKIT_API_SECRET",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_closes_sockets_and_exits_zero() {
    let (mut child, api) = spawn_binary(&[("LIVEKIT_API_SECRET", "never-printed-secret")]).await;
    let base = api.base().to_owned();
    let mut client = SioClient::connect(&base, Mode::Websocket).await;
    api.user("Ana").await;

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(killed.success());
    // The transport closes without a Socket.IO disconnect packet, so clients reconnect by
    // themselves, to another replica behind a load balancer.
    let reason = client.disconnected().await;
    assert_eq!(reason["reason"], "transport close");
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits in time").expect("exit status");
    assert_eq!(status.code(), Some(0));
    let output = child.wait_with_output().await.expect("output");
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!logs.contains("never-printed-secret"), "the secret leaked into the logs");
}

#[tokio::test]
async fn settings_that_cannot_work_stop_the_binary_with_status_2() {
    let cases = [
        ("LIVEKIT_API_KEY", ""),
        ("LIVEKIT_API_SECRET", " "),
        ("LIVEKIT_URL", "localhost:7880"),
        ("REDIS_URL", "redis://"),
        ("CORS_ORIGINS", "https://app.example/path"),
    ];
    for (setting, value) in cases {
        let out = Command::new(BIN)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env_remove("REDIS_URL")
            .env(setting, value)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT, out).await.expect("exits at once").expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{setting}: {stderr}");
        assert!(stderr.contains(setting), "the message names {setting}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "{setting}: it served");
    }
}

#[tokio::test]
async fn the_committed_api_document_is_what_the_code_generates_and_serves() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json is committed");
    let out = Command::new(BIN).arg("openapi").output().await.expect("runs");
    assert!(out.status.success());
    let generated = String::from_utf8_lossy(&out.stdout);
    assert!(
        generated.trim_end() == committed.trim_end(),
        "docs/openapi.json is stale: run scripts/gen-openapi.sh and commit it"
    );

    let (_child, api) = spawn_binary(&[]).await;
    let served = api.raw(reqwest::Method::GET, "/openapi.json").send().await.expect("sent");
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "application/json");
    let served: serde_json::Value = served.json().await.expect("json");
    let committed: serde_json::Value = serde_json::from_str(&committed).expect("valid json");
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn listed_cors_origins_are_echoed_with_credentials() {
    let (_child, api) = spawn_binary(&[("CORS_ORIGINS", "https://app.example,http://127.0.0.1:8080")]).await;
    let preflight = api.preflight("/calls", "https://app.example").await;
    assert!(preflight.status().is_success());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-methods"].to_str().unwrap_or_default().contains("POST"));
    assert!(headers["access-control-allow-headers"].to_str().unwrap_or_default().contains("content-type"));

    // Polling, as a browser sends it with `withCredentials`: the origin is echoed.
    let polling = api
        .raw(reqwest::Method::GET, "/socket.io/?EIO=4&transport=polling")
        .header("origin", "http://127.0.0.1:8080")
        .header("cookie", "affinity=1")
        .send()
        .await
        .expect("sent");
    assert_eq!(polling.status(), reqwest::StatusCode::OK);
    assert_eq!(polling.headers()["access-control-allow-origin"], "http://127.0.0.1:8080");
    assert_eq!(polling.headers()["access-control-allow-credentials"], "true");

    // An origin that is not listed gets no CORS grant.
    let other =
        api.raw(reqwest::Method::GET, "/users").header("origin", "https://evil.example").send().await.expect("sent");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn an_unsafe_request_id_is_replaced_and_a_safe_one_echoed() {
    let (_child, api) = spawn_binary(&[]).await;
    let echoed = |id: String| {
        let api = api.clone();
        async move {
            let r = api.raw(reqwest::Method::GET, "/healthz").header("x-request-id", &id).send().await.expect("sent");
            r.headers()["x-request-id"].to_str().expect("ascii").to_owned()
        }
    };
    assert_eq!(echoed("req-42.a:b".to_owned()).await, "req-42.a:b");
    for unsafe_id in ["x".repeat(129), "a b".to_owned(), "<script>".to_owned(), "\"quoted\"".to_owned()] {
        let id = echoed(unsafe_id.clone()).await;
        assert_ne!(id, unsafe_id);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a fresh id replaces {unsafe_id:?}: {id}");
    }
}

#[tokio::test]
async fn socket_io_refusals_are_problem_documents_with_cors() {
    let (_child, api) = spawn_binary(&[]).await;
    let unknown = api
        .raw(reqwest::Method::GET, "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA")
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
    assert_eq!(unknown.headers()["access-control-allow-origin"], "*");
    let problem: serde_json::Value = unknown.json().await.expect("json");
    assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(400), Some("bad_request")));
}
