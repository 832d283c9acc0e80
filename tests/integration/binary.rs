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
