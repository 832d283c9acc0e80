//! Redis fails over under running replicas: a Cluster primary hands its slot to its
//! replica, the slot then moves to another primary, and a Sentinel promotes the replica.
//! Every acknowledged write survives with exactly one event, and the replicas carry on
//! without a restart (scripts are loaded again where they now run).

use crate::support::{Mode, Shape, Shapes, SioClient, TestApp, WAIT, eventually, spawn_binary};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;

#[tokio::test]
async fn a_cluster_failover_and_a_resharding_lose_no_acknowledged_write() {
    let shapes = Shapes::private();
    let replica = TestApp::on_url(shapes.url(Shape::Cluster), "failover").await;
    let mut client = SioClient::connect(&replica.base, Mode::Websocket).await;
    let ports = shapes.ports("REDIS_CLUSTER_PORTS");
    let mut acknowledged = vec![write(&replica, &mut client, "before").await];

    // The replica of the primary that owns the namespace's slot takes over.
    let slot = cli(ports[0], &["cluster", "keyslot", "{failover}:"]).trim().to_owned();
    let owner = slot_owner(ports[0], &slot);
    let standby = cluster_nodes(ports[0]).into_iter().find(|n| n.primary.as_deref() == Some(owner.id.as_str()));
    let standby = standby.expect("the owner has a replica");
    assert_eq!(cli(standby.port, &["cluster", "failover"]).trim(), "OK");
    eventually("the replica to own the slot", || async { slot_owner(ports[0], &slot).id == standby.id }).await;
    acknowledged.push(write(&replica, &mut client, "after-failover").await);

    // The slot moves, with its keys, to another primary: all of its owner's slots do.
    let owner = slot_owner(ports[0], &slot);
    let target = cluster_nodes(ports[0]).into_iter().find(|n| n.primary.is_none() && n.id != owner.id);
    let target = target.expect("another primary");
    // (redis-cli has no timeout of its own.)
    let moved = Command::new("timeout")
        .args(["120", "redis-cli", "--cluster", "reshard", &format!("127.0.0.1:{}", ports[0])])
        .args(["--cluster-from", &owner.id, "--cluster-to", &target.id])
        .args(["--cluster-slots", &owner.slots.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(moved.status.success(), "reshard: {}", String::from_utf8_lossy(&moved.stderr));
    assert_eq!(slot_owner(ports[0], &slot).id, target.id);
    acknowledged.push(write(&replica, &mut client, "after-resharding").await);

    let (_, users) = replica.api.get("/users").await;
    assert_eq!(names(&users), acknowledged);
}

#[tokio::test]
async fn a_sentinel_failover_loses_no_acknowledged_write() {
    let shapes = Shapes::private();
    let replica = TestApp::on_url(shapes.url(Shape::Sentinel), "failover").await;
    let mut client = SioClient::connect(&replica.base, Mode::Websocket).await;
    let sentinel = shapes.ports("REDIS_SENTINEL_PORTS")[0];
    let primary = |port| cli(port, &["sentinel", "get-master-addr-by-name", "switchboard"]);
    let before = primary(sentinel);
    let mut acknowledged = vec![write(&replica, &mut client, "before").await];

    assert_eq!(cli(sentinel, &["sentinel", "failover", "switchboard"]).trim(), "OK");
    eventually("the sentinels to promote the replica", || async { primary(sentinel) != before }).await;
    acknowledged.push(write(&replica, &mut client, "after-failover").await);

    let (_, users) = replica.api.get("/users").await;
    assert_eq!(names(&users), acknowledged);
}

#[tokio::test]
async fn with_redis_wait_replicas_a_write_waits_for_a_replica_and_a_shortfall_is_counted() {
    let shapes = Shapes::private();
    let url = shapes.url(Shape::Sentinel).0;
    let env = [("REDIS_URL", url.as_str()), ("REDIS_WAIT_REPLICAS", "1"), ("REDIS_WAIT_TIMEOUT_MS", "300")];
    let (_replica, api) = spawn_binary(&env).await;
    let shortfalls =
        || async { api.metric(r#"switchboard_redis_errors_total{op="wait"}"#).await.expect("the wait error counter") };

    api.user("replicated").await;
    assert_eq!(shortfalls().await, 0.0, "the replica acknowledged the write");

    // With the replica stalled, the write still stands, after the wait, and is counted.
    shapes.freeze("replica", true);
    let (status, _) = api.post("/users", json!({ "name": "unreplicated" })).await;
    shapes.freeze("replica", false);
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(shortfalls().await, 1.0);
}

/// Registers a user as a careful client would through a failover: it retries after
/// `store_unavailable` (nothing was changed), and after `outcome_unknown` it first reads
/// whether the user exists. Then checks the user's event arrives, once.
async fn write(replica: &TestApp, client: &mut SioClient, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = replica.api.post("/users", json!({ "name": name })).await;
        if status == StatusCode::CREATED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        if body["code"] == "outcome_unknown" {
            let (status, users) = replica.api.get("/users").await;
            if status == StatusCode::OK && names(&users).iter().any(|n| n == name) {
                break;
            }
        } else {
            assert_eq!(body["code"], "store_unavailable", "{body}");
        }
        assert!(tokio::time::Instant::now() < deadline, "writes did not recover: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (event, arg) = client.next_event().await;
    assert_eq!((event.as_str(), &arg["data"]["name"]), ("user.registered", &json!(name)));
    name.to_owned()
}

fn names(users: &Value) -> Vec<String> {
    users.as_array().into_iter().flatten().map(|u| u["name"].as_str().unwrap_or_default().to_owned()).collect()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `CLUSTER NODES`.
struct Node {
    id: String,
    port: u16,
    /// The primary's id, for a replica.
    primary: Option<String>,
    /// Slot ranges, for a primary.
    ranges: Vec<(u32, u32)>,
    slots: u32,
}

fn cluster_nodes(port: u16) -> Vec<Node> {
    cli(port, &["cluster", "nodes"])
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            let primary = (f.get(3)? != &"-").then(|| f[3].to_owned());
            let ranges: Vec<(u32, u32)> = f[8.min(f.len())..]
                .iter()
                .filter_map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            let slots = ranges.iter().map(|(a, b)| b - a + 1).sum();
            Some(Node { id: f[0].to_owned(), port, primary, ranges, slots })
        })
        .collect()
}

fn slot_owner(port: u16, slot: &str) -> Node {
    let slot: u32 = slot.parse().expect("a slot number");
    let owner = cluster_nodes(port).into_iter().find(|n| n.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)));
    owner.expect("every slot has an owner")
}
