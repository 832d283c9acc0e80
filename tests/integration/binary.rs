//! The built `switchboard` binary as operators run it.

use crate::support::{Api, Mode, SioClient, WAIT};
use reqwest::StatusCode;
use std::process::Stdio;
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mut child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env_remove("REDIS_URL")
        .env("LIVEKIT_API_SECRET", "never-printed-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let base = format!("http://127.0.0.1:{port}");
    let api = Api::new(&base);
    crate::support::eventually("the binary to listen", || {
        let base = base.clone();
        async move { reqwest::get(format!("{base}/healthz")).await.is_ok_and(|r| r.status() == StatusCode::OK) }
    })
    .await;
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
