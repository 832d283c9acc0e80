//! A replica whose subscription drops misses what is published meanwhile on the live path;
//! it closes the gap from the namespace's event log: its clients hear every event once, in
//! order, in both AUTH modes. A gap longer than the log keeps is said, not hidden.

use crate::support::load::Writer;
use crate::support::{Api, Mode, Proxy, RedisServer, SioClient, TOKEN_MODE, TestApp, WAIT, spawn_binary, wait_status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_replica_cut_off_for_five_seconds_delivers_every_event_of_them_once_in_order() {
    cut_off_under_load(&[]).await;
}

#[tokio::test]
async fn with_tokens_a_replica_cut_off_for_five_seconds_delivers_every_event_of_them_once_in_order() {
    cut_off_under_load(&TOKEN_MODE).await;
}

/// One replica reaches Redis through a proxy that cuts it off for 5 s while users register
/// through the other, one after another; every client, on either replica, over each
/// transport, hears each acknowledged registration once, in the order acknowledged.
async fn cut_off_under_load(flags: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let cut_off = TestApp::on_url_with_flags(proxy.url(), "cut", flags).await;
    let direct = TestApp::with_flags(Some(&redis), "cut", flags).await;
    let auth = listener(&direct.api, flags).await;
    let mut clients = Vec::new();
    for (base, mode) in
        [(&cut_off.base, Mode::Websocket), (&cut_off.base, Mode::Polling), (&direct.base, Mode::Websocket)]
    {
        clients.push(SioClient::connect_with(base, mode, auth.clone()).await);
    }

    let writer = Writer::start(vec![direct.api.clone()], "cut", Duration::from_millis(10));
    writer.more(10, WAIT).await;
    proxy.cut();
    wait_status(&cut_off.api, "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    // The cut lasts 5 s under the load (the scenario, not a wait for an outcome).
    tokio::time::sleep(Duration::from_secs(5)).await;
    writer.more(1, WAIT).await;
    proxy.restore();
    wait_status(&cut_off.api, "/readyz", StatusCode::OK).await;
    writer.more(10, WAIT).await;
    let acknowledged = writer.stop().await;

    let last = direct.api.user("last").await;
    for client in &mut clients {
        let heard = client.events_until(|_, arg| arg["data"]["id"] == last.as_str()).await;
        assert_same(&registered(&heard), &acknowledged);
    }
}

/// A gap longer than the log keeps: the replica counts it and, with tokens, its clients
/// are told to reload (`session.resync`) rather than left with a silent hole; it is
/// ready again and delivers what follows.
#[tokio::test]
async fn a_gap_the_event_log_no_longer_covers_is_counted_and_told() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    // A log of 50 entries (trimmed by whole stream nodes of 100: at most a few hundred).
    let (url, small) = (proxy.url(), ["--event-log-max", "50"]);
    let env = [("REDIS_URL", url.as_str()), ("AUTH", "token"), ("AUTH_SECRET", crate::support::AUTH_SECRET)];
    let (_cut_off, api) = spawn_binary(&[env.as_slice(), &[("EVENT_LOG_MAX", "50")]].concat()).await;
    let direct = TestApp::with_flags(Some(&redis), "switchboard", &[&TOKEN_MODE[..], &small].concat()).await;
    let auth = listener(&direct.api, &TOKEN_MODE).await;
    let mut client = SioClient::connect_with(api.base(), Mode::Websocket, auth).await;
    let lost =
        || async { api.metric(r#"switchboard_relay_gaps_total{outcome="lost"}"#).await.expect("the gap counter") };
    assert_eq!(lost().await, 0.0);

    proxy.cut();
    wait_status(&api, "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    for n in 0..600 {
        direct.api.user(&format!("missed-{n}")).await;
    }
    proxy.restore();
    let (name, _) = client.next_event().await;
    assert_eq!(name, "session.resync");
    wait_status(&api, "/readyz", StatusCode::OK).await;
    assert_eq!(lost().await, 1.0);
    let after = direct.api.user("after").await;
    let heard = client.events_until(|_, arg| arg["data"]["id"] == after.as_str()).await;
    assert!(heard.iter().all(|(name, _)| name == "user.registered"), "only what the log still had: {heard:?}");
}

/// With `AUTH=token`, the connect packet of a registered user; else none.
async fn listener(api: &Api, flags: &[&str]) -> Option<Value> {
    if flags.is_empty() {
        return None;
    }
    let (status, user) = api.post("/users", json!({ "name": "listener" })).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    Some(json!({ "token": user["token"] }))
}

/// Every acknowledged event once, in order; on failure, where the two part (not thousands
/// of ids).
fn assert_same(heard: &[String], acknowledged: &[String]) {
    let first = heard.iter().zip(acknowledged).position(|(h, a)| h != a);
    assert!(
        first.is_none() && heard.len() == acknowledged.len(),
        "heard {} events, {} acknowledged; they differ first at {first:?} (heard {:?}, acknowledged {:?})",
        heard.len(),
        acknowledged.len(),
        first.and_then(|i| heard.get(i)),
        first.and_then(|i| acknowledged.get(i)),
    );
}

/// The ids of `user.registered` events, failing on any other event.
fn registered(heard: &[(String, Value)]) -> Vec<String> {
    heard
        .iter()
        .map(|(name, arg)| {
            assert_eq!(name, "user.registered", "{arg}");
            arg["data"]["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}
